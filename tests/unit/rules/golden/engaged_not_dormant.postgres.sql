WITH ev AS (
  SELECT
    *
  FROM profile_events
  WHERE
    timestamp_ms <= %(at_ms)s
), profiles AS (
  SELECT DISTINCT
    profile_id
  FROM profile_events
), "segment__big_spenders" AS (
  SELECT
    p.profile_id
  FROM profiles AS p
  WHERE
    COALESCE(
      (
        (
          SELECT
            COALESCE(
              SUM(
                CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e0.properties AS JSON), 'revenue')) = 'number'
                  THEN CASE
                    WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e0.properties AS JSON), 'revenue')) = 'number'
                    THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e0.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                  END
                END
              ),
              CAST(0 AS DOUBLE PRECISION)
            )
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND (
              e0.type = 'track' AND e0.event = 'Order Completed'
            )
            AND e0.timestamp_ms <= %(at_ms)s - 0
            AND e0.timestamp_ms > %(at_ms)s - 7776000000
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
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                  THEN CASE
                    WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                    THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e1.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                  END
                END
              ) > 0
              THEN CAST(SUM(
                CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                  THEN CASE
                    WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                    THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e1.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                  END
                END
              ) AS DOUBLE PRECISION) / COUNT(
                CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                  THEN CASE
                    WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                    THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e1.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                  END
                END
              )
            END
          FROM ev AS e1
          WHERE
            e1.profile_id = p.profile_id
            AND (
              e1.type = 'track' AND e1.event = 'Order Completed'
            )
            AND e1.timestamp_ms <= %(at_ms)s - 0
            AND e1.timestamp_ms > %(at_ms)s - 7776000000
        ) > CAST(100 AS DOUBLE PRECISION)
      ),
      FALSE
    )
), "segment__dormant" AS (
  SELECT
    p.profile_id
  FROM profiles AS p
  WHERE
    NOT COALESCE(
      (
        (
          SELECT
            COUNT(*)
          FROM ev AS e2
          WHERE
            e2.profile_id = p.profile_id
            AND TRUE
            AND e2.timestamp_ms <= %(at_ms)s - 0
            AND e2.timestamp_ms > %(at_ms)s - 1209600000
        ) >= CAST(1 AS DOUBLE PRECISION)
      ),
      FALSE
    )
), "segment__frequent_visitors" AS (
  SELECT
    p.profile_id
  FROM profiles AS p
  WHERE
    COALESCE(
      (
        (
          SELECT
            COUNT(DISTINCT DIV((
              %(at_ms)s - e3.timestamp_ms
            ), 86400000))
          FROM ev AS e3
          WHERE
            e3.profile_id = p.profile_id
            AND TRUE
            AND e3.timestamp_ms <= %(at_ms)s - 0
            AND e3.timestamp_ms > %(at_ms)s - 2592000000
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
                WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'session_id')) IN ('string', 'boolean')
                OR (
                  JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'session_id')) = 'number'
                  AND CAST(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'session_id') AS TEXT) ~ '^-?[0-9]+$'
                )
                THEN JSON_EXTRACT_PATH_TEXT(CAST(e4.properties AS JSON), 'session_id')
              END
            )
          FROM ev AS e4
          WHERE
            e4.profile_id = p.profile_id
            AND TRUE
            AND e4.timestamp_ms <= %(at_ms)s - 0
            AND e4.timestamp_ms > %(at_ms)s - 2592000000
        ) >= CAST(8 AS DOUBLE PRECISION)
      ),
      FALSE
    )
)
SELECT
  p.profile_id
FROM profiles AS p
WHERE
  (
    COALESCE(
      (
        p.profile_id IN (
          SELECT
            profile_id
          FROM segment__frequent_visitors
        )
      ),
      FALSE
    )
    OR COALESCE(
      (
        p.profile_id IN (
          SELECT
            profile_id
          FROM segment__big_spenders
        )
      ),
      FALSE
    )
  )
  AND NOT COALESCE(
    (
      p.profile_id IN (
        SELECT
          profile_id
        FROM segment__dormant
      )
    ),
    FALSE
  )
ORDER BY
  p.profile_id
