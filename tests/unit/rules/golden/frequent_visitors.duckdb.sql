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
)
SELECT
  p.profile_id
FROM profiles AS p
WHERE
  COALESCE(
    (
      (
        SELECT
          COUNT(DISTINCT (
            $at_ms - e0.timestamp_ms
          ) // 86400000)
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id
          AND TRUE
          AND e0.timestamp_ms <= $at_ms - 0
          AND e0.timestamp_ms > $at_ms - 2592000000
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
              WHEN JSON_TYPE(e1.properties, '$.session_id') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
              THEN e1.properties ->> '$.session_id'
            END
          )
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
          AND TRUE
          AND e1.timestamp_ms <= $at_ms - 0
          AND e1.timestamp_ms > $at_ms - 2592000000
      ) >= CAST(8 AS DOUBLE)
    ),
    FALSE
  )
ORDER BY
  p.profile_id
