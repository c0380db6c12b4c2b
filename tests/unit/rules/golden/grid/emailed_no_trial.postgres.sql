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
          COUNT(*)
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id
          AND (
            e0.type = 'track'
            AND e0.event = 'Email Clicked'
            AND COALESCE(
              (
                JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e0.properties AS JSON), 'list')) = 'string'
                AND JSON_EXTRACT_PATH_TEXT(CAST(e0.properties AS JSON), 'list') = 'marketing'
              ),
              FALSE
            )
          )
          AND e0.timestamp_ms <= t.at_ms - 0
          AND e0.timestamp_ms > t.at_ms - 2592000000
          AND e0.timestamp_ms <= t.at_ms
      ) >= CAST(1 AS DOUBLE PRECISION)
    ),
    FALSE
  )
  AND NOT COALESCE(
    (
      (
        SELECT
          COUNT(*)
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
          AND (
            e1.type = 'track' AND e1.event = 'Trial Started'
          )
          AND e1.timestamp_ms <= t.at_ms - 0
          AND e1.timestamp_ms <= t.at_ms
      ) >= CAST(1 AS DOUBLE PRECISION)
    ),
    FALSE
  )
ORDER BY
  t.at_ms,
  p.profile_id
