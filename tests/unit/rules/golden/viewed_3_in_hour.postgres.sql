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
            e0.type = 'track' AND e0.event = 'Product Viewed'
          )
          AND e0.timestamp_ms <= %(at_ms)s - 0
          AND e0.timestamp_ms > %(at_ms)s - 3600000
      ) >= CAST(3 AS DOUBLE PRECISION)
    ),
    FALSE
  )
ORDER BY
  p.profile_id
