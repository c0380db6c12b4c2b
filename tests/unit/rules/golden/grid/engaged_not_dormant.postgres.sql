WITH t AS (
  SELECT
    CAST(v.at_ms AS BIGINT) AS at_ms
  FROM (VALUES
    (0),
    (86400000)) AS v(at_ms)
), ev AS (
  SELECT
    *
  FROM profile_events
  WHERE
    timestamp_ms <= 86400000
), profiles AS (
  SELECT
    profile_id,
    MIN(timestamp_ms) AS first_ms
  FROM profile_events
  GROUP BY
    profile_id
), "segment__big_spenders" AS (
  SELECT
    t.at_ms,
    p.profile_id
  FROM t AS t
  JOIN profiles AS p
    ON p.first_ms <= t.at_ms
  WHERE
    COALESCE(
      (
        (
          SELECT
            COALESCE(
              SUM(
                CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e3.properties AS JSON), 'revenue')) = 'number'
                  THEN CASE
                    WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e3.properties AS JSON), 'revenue')) = 'number'
                    THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e3.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                  END
                END
              ),
              CAST(0 AS DOUBLE PRECISION)
            )
          FROM ev AS e3
          WHERE
            e3.profile_id = p.profile_id
            AND (
              e3.type = 'track' AND e3.event = 'Order Completed'
            )
            AND e3.timestamp_ms <= t.at_ms - 0
            AND e3.timestamp_ms > t.at_ms - 7776000000
            AND e3.timestamp_ms <= t.at_ms
        ) >= CAST(400 AS DOUBLE PRECISION)
      ),
      FALSE
    )
    AND COALESCE(
      (
        (
          SELECT
            CASE
              WHEN COUNT(
                CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'revenue')) = 'number'
                  THEN CASE
                    WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'revenue')) = 'number'
                    THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e4.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                  END
                END
              ) > 0
              THEN CAST(SUM(
                CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'revenue')) = 'number'
                  THEN CASE
                    WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'revenue')) = 'number'
                    THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e4.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                  END
                END
              ) AS DOUBLE PRECISION) / COUNT(
                CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'revenue')) = 'number'
                  THEN CASE
                    WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'revenue')) = 'number'
                    THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e4.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                  END
                END
              )
            END
          FROM ev AS e4
          WHERE
            e4.profile_id = p.profile_id
            AND (
              e4.type = 'track' AND e4.event = 'Order Completed'
            )
            AND e4.timestamp_ms <= t.at_ms - 0
            AND e4.timestamp_ms > t.at_ms - 7776000000
            AND e4.timestamp_ms <= t.at_ms
        ) > CAST(100 AS DOUBLE PRECISION)
      ),
      FALSE
    )
), "segment__dormant" AS (
  SELECT
    t.at_ms,
    p.profile_id
  FROM t AS t
  JOIN profiles AS p
    ON p.first_ms <= t.at_ms
  WHERE
    NOT COALESCE(
      (
        (
          SELECT
            COUNT(*)
          FROM ev AS e5
          WHERE
            e5.profile_id = p.profile_id
            AND TRUE
            AND e5.timestamp_ms <= t.at_ms - 0
            AND e5.timestamp_ms > t.at_ms - 1209600000
            AND e5.timestamp_ms <= t.at_ms
        ) >= CAST(1 AS DOUBLE PRECISION)
      ),
      FALSE
    )
), "segment__frequent_visitors" AS (
  SELECT
    t.at_ms,
    p.profile_id
  FROM t AS t
  JOIN profiles AS p
    ON p.first_ms <= t.at_ms
  WHERE
    COALESCE(
      (
        (
          SELECT
            COUNT(DISTINCT DIV((
              t.at_ms - e6.timestamp_ms
            ), 86400000))
          FROM ev AS e6
          WHERE
            e6.profile_id = p.profile_id
            AND TRUE
            AND e6.timestamp_ms <= t.at_ms - 0
            AND e6.timestamp_ms > t.at_ms - 2592000000
            AND e6.timestamp_ms <= t.at_ms
        ) >= 8
      ),
      FALSE
    )
    OR COALESCE(
      (
        (
          SELECT
            COUNT(
              DISTINCT CASE
                WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e7.properties AS JSON), 'session_id')) IN ('string', 'boolean')
                OR (
                  JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e7.properties AS JSON), 'session_id')) = 'number'
                  AND CAST(JSON_EXTRACT_PATH(CAST(e7.properties AS JSON), 'session_id') AS TEXT) ~ '^-?[0-9]+$'
                )
                THEN JSON_EXTRACT_PATH_TEXT(CAST(e7.properties AS JSON), 'session_id')
              END
            )
          FROM ev AS e7
          WHERE
            e7.profile_id = p.profile_id
            AND TRUE
            AND e7.timestamp_ms <= t.at_ms - 0
            AND e7.timestamp_ms > t.at_ms - 2592000000
            AND e7.timestamp_ms <= t.at_ms
        ) >= CAST(8 AS DOUBLE PRECISION)
      ),
      FALSE
    )
)
SELECT
  t.at_ms,
  p.profile_id
FROM t AS t
JOIN profiles AS p
  ON p.first_ms <= t.at_ms
WHERE
  (
    COALESCE(
      (
        EXISTS(
          SELECT
            1
          FROM segment__frequent_visitors AS e0
          WHERE
            e0.profile_id = p.profile_id AND e0.at_ms = t.at_ms
        )
      ),
      FALSE
    )
    OR COALESCE(
      (
        EXISTS(
          SELECT
            1
          FROM segment__big_spenders AS e1
          WHERE
            e1.profile_id = p.profile_id AND e1.at_ms = t.at_ms
        )
      ),
      FALSE
    )
  )
  AND NOT COALESCE(
    (
      EXISTS(
        SELECT
          1
        FROM segment__dormant AS e2
        WHERE
          e2.profile_id = p.profile_id AND e2.at_ms = t.at_ms
      )
    ),
    FALSE
  )
ORDER BY
  t.at_ms,
  p.profile_id
