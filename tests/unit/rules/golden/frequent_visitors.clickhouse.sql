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
              ) / 86400000 AS Nullable(Int64))
            )
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND TRUE
            AND e0.timestamp_ms <= {at_ms: Int64} - 0
            AND e0.timestamp_ms > {at_ms: Int64} - 2592000000
        ),
        0
      ) >= 8
    ),
    FALSE
  )
  OR COALESCE(
    (
      COALESCE(
        (
          SELECT
            COUNT(
              DISTINCT CASE
                WHEN CAST(JSONType(e1.properties, 'session_id') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
                THEN CASE
                  WHEN CAST(JSONType(e1.properties, 'session_id') AS Nullable(String)) = 'String'
                  THEN JSONExtractString(e1.properties, 'session_id')
                  WHEN JSONHas(e1.properties, 'session_id')
                  THEN JSONExtractRaw(e1.properties, 'session_id')
                END
              END
            )
          FROM ev AS e1
          WHERE
            e1.profile_id = p.profile_id
            AND TRUE
            AND e1.timestamp_ms <= {at_ms: Int64} - 0
            AND e1.timestamp_ms > {at_ms: Int64} - 2592000000
        ),
        0
      ) >= CAST(8 AS Nullable(Float64))
    ),
    FALSE
  )
ORDER BY
  p.profile_id
