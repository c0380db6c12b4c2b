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
      NOT EXISTS(
        SELECT
          1
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id AND NOT (
            e0.user_id IS NULL
          )
      )
    ),
    FALSE
  )
  AND COALESCE(
    (
      (
        SELECT
          CAST(MIN(e1.timestamp_ms) AS Nullable(Float64))
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
      ) <= {at_ms: Int64} - 0
      AND (
        SELECT
          CAST(MIN(e1.timestamp_ms) AS Nullable(Float64))
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
      ) > {at_ms: Int64} - 86400000
    ),
    FALSE
  )
  AND (
    COALESCE(
      (
        COALESCE(
          (
            SELECT
              COUNT(*)
            FROM ev AS e2
            WHERE
              e2.profile_id = p.profile_id
              AND (
                e2.type = 'track'
                AND e2.event = 'Products Searched'
                AND COALESCE(
                  (
                    CAST(JSONType(e2.properties, 'query') AS Nullable(String)) = 'String'
                    AND CASE
                      WHEN CAST(JSONType(e2.properties, 'query') AS Nullable(String)) = 'String'
                      THEN JSONExtractString(e2.properties, 'query')
                      WHEN JSONHas(e2.properties, 'query')
                      THEN JSONExtractRaw(e2.properties, 'query')
                    END = 'running shoes'
                  ),
                  FALSE
                )
              )
              AND e2.timestamp_ms <= {at_ms: Int64} - 0
          ),
          0
        ) >= CAST(1 AS Nullable(Float64))
      ),
      FALSE
    )
    OR COALESCE(
      (
        COALESCE(
          (
            SELECT
              COUNT(*)
            FROM ev AS e3
            WHERE
              e3.profile_id = p.profile_id
              AND (
                e3.type = 'track'
                AND e3.event = 'Product Viewed'
                AND COALESCE(
                  (
                    CAST(JSONType(e3.properties, 'category') AS Nullable(String)) = 'String'
                    AND CASE
                      WHEN CAST(JSONType(e3.properties, 'category') AS Nullable(String)) = 'String'
                      THEN JSONExtractString(e3.properties, 'category')
                      WHEN JSONHas(e3.properties, 'category')
                      THEN JSONExtractRaw(e3.properties, 'category')
                    END = 'shoes'
                  ),
                  FALSE
                )
              )
              AND e3.timestamp_ms <= {at_ms: Int64} - 0
          ),
          0
        ) >= CAST(2 AS Nullable(Float64))
      ),
      FALSE
    )
  )
ORDER BY
  p.profile_id
