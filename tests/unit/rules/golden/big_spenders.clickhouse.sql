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
            COALESCE(
              SUM(
                CASE
                  WHEN CAST(JSONType(e0.properties, 'revenue') AS Nullable(String)) IN ('Int64', 'UInt64', 'Double')
                  THEN JSONExtract(e0.properties, 'revenue', 'Nullable(Float64)')
                END
              ),
              CAST(0 AS Nullable(Float64))
            )
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND (
              e0.type = 'track' AND e0.event = 'Order Completed'
            )
            AND e0.timestamp_ms <= {at_ms: Int64} - 0
            AND e0.timestamp_ms > {at_ms: Int64} - 7776000000
        ),
        CAST(0 AS Nullable(Float64))
      ) >= CAST(400 AS Nullable(Float64))
    ),
    FALSE
  )
  AND COALESCE(
    (
      (
        SELECT
          CASE
            WHEN COUNT(
              CASE
                WHEN CAST(JSONType(e1.properties, 'revenue') AS Nullable(String)) IN ('Int64', 'UInt64', 'Double')
                THEN JSONExtract(e1.properties, 'revenue', 'Nullable(Float64)')
              END
            ) > 0
            THEN SUM(
              CASE
                WHEN CAST(JSONType(e1.properties, 'revenue') AS Nullable(String)) IN ('Int64', 'UInt64', 'Double')
                THEN JSONExtract(e1.properties, 'revenue', 'Nullable(Float64)')
              END
            ) / COUNT(
              CASE
                WHEN CAST(JSONType(e1.properties, 'revenue') AS Nullable(String)) IN ('Int64', 'UInt64', 'Double')
                THEN JSONExtract(e1.properties, 'revenue', 'Nullable(Float64)')
              END
            )
          END
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
          AND (
            e1.type = 'track' AND e1.event = 'Order Completed'
          )
          AND e1.timestamp_ms <= {at_ms: Int64} - 0
          AND e1.timestamp_ms > {at_ms: Int64} - 7776000000
      ) > CAST(100 AS Nullable(Float64))
    ),
    FALSE
  )
ORDER BY
  p.profile_id
