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
                  WHEN JSON_TYPE(e3.properties, '$.revenue') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                  THEN TRY_CAST(e3.properties ->> '$.revenue' AS DOUBLE)
                END
              ),
              CAST(0 AS DOUBLE)
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
        ) >= CAST(400 AS DOUBLE)
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
                  WHEN JSON_TYPE(e4.properties, '$.revenue') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                  THEN TRY_CAST(e4.properties ->> '$.revenue' AS DOUBLE)
                END
              ) > 0
              THEN SUM(
                CASE
                  WHEN JSON_TYPE(e4.properties, '$.revenue') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                  THEN TRY_CAST(e4.properties ->> '$.revenue' AS DOUBLE)
                END
              ) / COUNT(
                CASE
                  WHEN JSON_TYPE(e4.properties, '$.revenue') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                  THEN TRY_CAST(e4.properties ->> '$.revenue' AS DOUBLE)
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
        ) > CAST(100 AS DOUBLE)
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
        ) >= CAST(1 AS DOUBLE)
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
            COUNT(DISTINCT (
              t.at_ms - e6.timestamp_ms
            ) // 86400000)
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
                WHEN JSON_TYPE(e7.properties, '$.session_id') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
                THEN e7.properties ->> '$.session_id'
              END
            )
          FROM ev AS e7
          WHERE
            e7.profile_id = p.profile_id
            AND TRUE
            AND e7.timestamp_ms <= t.at_ms - 0
            AND e7.timestamp_ms > t.at_ms - 2592000000
            AND e7.timestamp_ms <= t.at_ms
        ) >= CAST(8 AS DOUBLE)
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
