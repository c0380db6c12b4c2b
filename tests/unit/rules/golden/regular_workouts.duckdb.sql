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
          ) // 604800000)
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id
          AND (
            e0.type = 'track' AND e0.event = 'Workout Logged'
          )
          AND e0.timestamp_ms <= $at_ms - 0
          AND e0.timestamp_ms > $at_ms - 2419200000
      ) >= 3
    ),
    FALSE
  )
ORDER BY
  p.profile_id
