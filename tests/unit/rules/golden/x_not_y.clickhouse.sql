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
            COUNT(*)
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND (
              e0.type = 'track'
              AND e0.event = 'Feature Used'
              AND COALESCE(
                (
                  CAST(JSONType(e0.properties, 'feature') AS Nullable(String)) = 'String'
                  AND CASE
                    WHEN CAST(JSONType(e0.properties, 'feature') AS Nullable(String)) = 'String'
                    THEN JSONExtractString(e0.properties, 'feature')
                    WHEN JSONHas(e0.properties, 'feature')
                    THEN JSONExtractRaw(e0.properties, 'feature')
                  END = 'X'
                ),
                FALSE
              )
            )
            AND e0.timestamp_ms <= {at_ms: Int64} - 0
        ),
        0
      ) >= CAST(1 AS Nullable(Float64))
    ),
    FALSE
  )
  AND NOT COALESCE(
    (
      COALESCE(
        (
          SELECT
            COUNT(*)
          FROM ev AS e1
          WHERE
            e1.profile_id = p.profile_id
            AND (
              e1.type = 'track'
              AND e1.event = 'Feature Used'
              AND COALESCE(
                (
                  CAST(JSONType(e1.properties, 'feature') AS Nullable(String)) = 'String'
                  AND CASE
                    WHEN CAST(JSONType(e1.properties, 'feature') AS Nullable(String)) = 'String'
                    THEN JSONExtractString(e1.properties, 'feature')
                    WHEN JSONHas(e1.properties, 'feature')
                    THEN JSONExtractRaw(e1.properties, 'feature')
                  END = 'Y'
                ),
                FALSE
              )
            )
            AND e1.timestamp_ms <= {at_ms: Int64} - 0
        ),
        0
      ) >= CAST(1 AS Nullable(Float64))
    ),
    FALSE
  )
ORDER BY
  p.profile_id
