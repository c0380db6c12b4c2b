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
            e0.type = 'track' AND e0.event = 'Order Completed'
          )
          AND e0.timestamp_ms <= %(at_ms)s - 2592000000
          AND e0.timestamp_ms > %(at_ms)s - 7776000000
      ) >= CAST(1 AS DOUBLE PRECISION)
    ),
    FALSE
  )
ORDER BY
  p.profile_id
