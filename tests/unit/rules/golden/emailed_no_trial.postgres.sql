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
)
SELECT
  p.profile_id
FROM profiles AS p
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
          AND e0.timestamp_ms <= %(at_ms)s - 0
          AND e0.timestamp_ms > %(at_ms)s - 2592000000
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
          AND e1.timestamp_ms <= %(at_ms)s - 0
      ) >= CAST(1 AS DOUBLE PRECISION)
    ),
    FALSE
  )
ORDER BY
  p.profile_id
