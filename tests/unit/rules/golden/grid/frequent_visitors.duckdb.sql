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
)
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
            t.at_ms - e0.timestamp_ms
          ) // 86400000)
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id
          AND TRUE
          AND e0.timestamp_ms <= t.at_ms - 0
          AND e0.timestamp_ms > t.at_ms - 2592000000
          AND e0.timestamp_ms <= t.at_ms
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
          AND e1.timestamp_ms <= t.at_ms - 0
          AND e1.timestamp_ms > t.at_ms - 2592000000
          AND e1.timestamp_ms <= t.at_ms
      ) >= CAST(8 AS DOUBLE)
    ),
    FALSE
  )
ORDER BY
  t.at_ms,
  p.profile_id
