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
  NOT COALESCE(
    (
      COALESCE(
        (
          SELECT
            COUNT(*)
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND TRUE
            AND e0.timestamp_ms <= {at_ms: Int64} - 0
            AND e0.timestamp_ms > {at_ms: Int64} - 1209600000
        ),
        0
      ) >= CAST(1 AS Nullable(Float64))
    ),
    FALSE
  )
ORDER BY
  p.profile_id
