WITH ev AS (
  SELECT
    *
  FROM profile_events
  WHERE
    timestamp_ms <= {at_ms: Int64}
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
      COALESCE(
        (
          SELECT
            COUNT(
              DISTINCT CAST((
                {at_ms: Int64} - e0.timestamp_ms
              ) / 604800000 AS Nullable(Int64))
            )
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND (
              e0.type = 'track' AND e0.event = 'Workout Logged'
            )
            AND e0.timestamp_ms <= {at_ms: Int64} - 0
            AND e0.timestamp_ms > {at_ms: Int64} - 2419200000
        ),
        0
      ) >= 3
    ),
    FALSE
  )
ORDER BY
  p.profile_id
