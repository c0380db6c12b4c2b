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
), "segment__big_spenders" AS (
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
), "segment__dormant" AS (
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
            FROM ev AS e2
            WHERE
              e2.profile_id = p.profile_id
              AND TRUE
              AND e2.timestamp_ms <= {at_ms: Int64} - 0
              AND e2.timestamp_ms > {at_ms: Int64} - 1209600000
          ),
          0
        ) >= CAST(1 AS Nullable(Float64))
      ),
      FALSE
    )
), "segment__frequent_visitors" AS (
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
                  {at_ms: Int64} - e3.timestamp_ms
                ) / 86400000 AS Nullable(Int64))
              )
            FROM ev AS e3
            WHERE
              e3.profile_id = p.profile_id
              AND TRUE
              AND e3.timestamp_ms <= {at_ms: Int64} - 0
              AND e3.timestamp_ms > {at_ms: Int64} - 2592000000
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
                  WHEN CAST(JSONType(e4.properties, 'session_id') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
                  THEN CASE
                    WHEN CAST(JSONType(e4.properties, 'session_id') AS Nullable(String)) = 'String'
                    THEN JSONExtractString(e4.properties, 'session_id')
                    WHEN JSONHas(e4.properties, 'session_id')
                    THEN JSONExtractRaw(e4.properties, 'session_id')
                  END
                END
              )
            FROM ev AS e4
            WHERE
              e4.profile_id = p.profile_id
              AND TRUE
              AND e4.timestamp_ms <= {at_ms: Int64} - 0
              AND e4.timestamp_ms > {at_ms: Int64} - 2592000000
          ),
          0
        ) >= CAST(8 AS Nullable(Float64))
      ),
      FALSE
    )
)
SELECT
  p.profile_id
FROM profiles AS p
WHERE
  (
    COALESCE(
      (
        p.profile_id IN (
          SELECT
            profile_id
          FROM segment__frequent_visitors
        )
      ),
      FALSE
    )
    OR COALESCE(
      (
        p.profile_id IN (
          SELECT
            profile_id
          FROM segment__big_spenders
        )
      ),
      FALSE
    )
  )
  AND NOT COALESCE(
    (
      p.profile_id IN (
        SELECT
          profile_id
        FROM segment__dormant
      )
    ),
    FALSE
  )
ORDER BY
  p.profile_id
