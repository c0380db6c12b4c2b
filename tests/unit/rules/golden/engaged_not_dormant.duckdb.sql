WITH ev AS (
  SELECT
    *
  FROM profile_events
  WHERE
    timestamp_ms <= $at_ms
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
                  WHEN JSON_TYPE(e0.properties, '$.revenue') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                  THEN TRY_CAST(e0.properties ->> '$.revenue' AS DOUBLE)
                END
              ),
              CAST(0 AS DOUBLE)
            )
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND (
              e0.type = 'track' AND e0.event = 'Order Completed'
            )
            AND e0.timestamp_ms <= $at_ms - 0
            AND e0.timestamp_ms > $at_ms - 7776000000
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
                  WHEN JSON_TYPE(e1.properties, '$.revenue') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                  THEN TRY_CAST(e1.properties ->> '$.revenue' AS DOUBLE)
                END
              ) > 0
              THEN SUM(
                CASE
                  WHEN JSON_TYPE(e1.properties, '$.revenue') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                  THEN TRY_CAST(e1.properties ->> '$.revenue' AS DOUBLE)
                END
              ) / COUNT(
                CASE
                  WHEN JSON_TYPE(e1.properties, '$.revenue') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
                  THEN TRY_CAST(e1.properties ->> '$.revenue' AS DOUBLE)
                END
              )
            END
          FROM ev AS e1
          WHERE
            e1.profile_id = p.profile_id
            AND (
              e1.type = 'track' AND e1.event = 'Order Completed'
            )
            AND e1.timestamp_ms <= $at_ms - 0
            AND e1.timestamp_ms > $at_ms - 7776000000
        ) > CAST(100 AS DOUBLE)
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
            AND e2.timestamp_ms <= $at_ms - 0
            AND e2.timestamp_ms > $at_ms - 1209600000
        ) >= CAST(1 AS DOUBLE)
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
            COUNT(DISTINCT (
              $at_ms - e3.timestamp_ms
            ) // 86400000)
          FROM ev AS e3
          WHERE
            e3.profile_id = p.profile_id
            AND TRUE
            AND e3.timestamp_ms <= $at_ms - 0
            AND e3.timestamp_ms > $at_ms - 2592000000
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
                WHEN JSON_TYPE(e4.properties, '$.session_id') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
                THEN e4.properties ->> '$.session_id'
              END
            )
          FROM ev AS e4
          WHERE
            e4.profile_id = p.profile_id
            AND TRUE
            AND e4.timestamp_ms <= $at_ms - 0
            AND e4.timestamp_ms > $at_ms - 2592000000
        ) >= CAST(8 AS DOUBLE)
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
