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
              DISTINCT CASE
                WHEN CAST(JSONType(e0.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
                THEN CASE
                  WHEN CAST(JSONType(e0.properties, 'category') AS Nullable(String)) = 'String'
                  THEN JSONExtractString(e0.properties, 'category')
                  WHEN JSONHas(e0.properties, 'category')
                  THEN JSONExtractRaw(e0.properties, 'category')
                END
              END
            )
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND (
              e0.type = 'track' AND e0.event = 'Product Viewed'
            )
            AND e0.timestamp_ms <= {at_ms: Int64} - 0
            AND e0.timestamp_ms > {at_ms: Int64} - 604800000
        ),
        0
      ) >= CAST(3 AS Nullable(Float64))
    ),
    FALSE
  )
  AND COALESCE(
    (
      (
        SELECT
          argMin(t, tuple(-c, t))
        FROM (
          SELECT
            CASE
              WHEN CAST(JSONType(e1.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
              THEN CASE
                WHEN CAST(JSONType(e1.properties, 'category') AS Nullable(String)) = 'String'
                THEN JSONExtractString(e1.properties, 'category')
                WHEN JSONHas(e1.properties, 'category')
                THEN JSONExtractRaw(e1.properties, 'category')
              END
            END AS t,
            COUNT(*) AS c
          FROM ev AS e1
          WHERE
            (
              e1.profile_id = p.profile_id
              AND (
                e1.type = 'track' AND e1.event = 'Product Viewed'
              )
              AND e1.timestamp_ms <= {at_ms: Int64} - 0
              AND e1.timestamp_ms > {at_ms: Int64} - 604800000
            )
            AND NOT (
              CASE
                WHEN CAST(JSONType(e1.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
                THEN CASE
                  WHEN CAST(JSONType(e1.properties, 'category') AS Nullable(String)) = 'String'
                  THEN JSONExtractString(e1.properties, 'category')
                  WHEN JSONHas(e1.properties, 'category')
                  THEN JSONExtractRaw(e1.properties, 'category')
                END
              END IS NULL
            )
          GROUP BY
            CASE
              WHEN CAST(JSONType(e1.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
              THEN CASE
                WHEN CAST(JSONType(e1.properties, 'category') AS Nullable(String)) = 'String'
                THEN JSONExtractString(e1.properties, 'category')
                WHEN JSONHas(e1.properties, 'category')
                THEN JSONExtractRaw(e1.properties, 'category')
              END
            END
        ) AS f
      ) = 'shoes'
    ),
    FALSE
  )
ORDER BY
  p.profile_id
