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
  p.profile_id,
  COALESCE(
    (
      SELECT
        COUNT(*)
      FROM ev AS e0
      WHERE
        e0.profile_id = p.profile_id
        AND (
          e0.type = 'track' AND e0.event = 'Order Completed'
        )
        AND e0.timestamp_ms <= {at_ms: Int64} - 0
        AND e0.timestamp_ms > {at_ms: Int64} - 7776000000
    ),
    0
  ) AS "orders_90d",
  COALESCE(
    (
      SELECT
        COALESCE(
          SUM(
            CASE
              WHEN CAST(JSONType(e1.properties, 'revenue') AS Nullable(String)) IN ('Int64', 'UInt64', 'Double')
              THEN JSONExtract(e1.properties, 'revenue', 'Nullable(Float64)')
            END
          ),
          CAST(0 AS Nullable(Float64))
        )
      FROM ev AS e1
      WHERE
        e1.profile_id = p.profile_id
        AND (
          e1.type = 'track' AND e1.event = 'Order Completed'
        )
        AND e1.timestamp_ms <= {at_ms: Int64} - 0
    ),
    CAST(0 AS Nullable(Float64))
  ) AS "lifetime_revenue",
  (
    SELECT
      argMin(t, tuple(-c, t))
    FROM (
      SELECT
        CASE
          WHEN CAST(JSONType(e2.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
          THEN CASE
            WHEN CAST(JSONType(e2.properties, 'category') AS Nullable(String)) = 'String'
            THEN JSONExtractString(e2.properties, 'category')
            WHEN JSONHas(e2.properties, 'category')
            THEN JSONExtractRaw(e2.properties, 'category')
          END
        END AS t,
        COUNT(*) AS c
      FROM ev AS e2
      WHERE
        (
          e2.profile_id = p.profile_id
          AND (
            e2.type = 'track' AND e2.event = 'Product Viewed'
          )
          AND e2.timestamp_ms <= {at_ms: Int64} - 0
        )
        AND NOT (
          CASE
            WHEN CAST(JSONType(e2.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
            THEN CASE
              WHEN CAST(JSONType(e2.properties, 'category') AS Nullable(String)) = 'String'
              THEN JSONExtractString(e2.properties, 'category')
              WHEN JSONHas(e2.properties, 'category')
              THEN JSONExtractRaw(e2.properties, 'category')
            END
          END IS NULL
        )
      GROUP BY
        CASE
          WHEN CAST(JSONType(e2.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
          THEN CASE
            WHEN CAST(JSONType(e2.properties, 'category') AS Nullable(String)) = 'String'
            THEN JSONExtractString(e2.properties, 'category')
            WHEN JSONHas(e2.properties, 'category')
            THEN JSONExtractRaw(e2.properties, 'category')
          END
        END
    ) AS f
  ) AS "favourite_category",
  (
    SELECT
      argMin(
        CASE
          WHEN CAST(JSONType(e3.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
          THEN CASE
            WHEN CAST(JSONType(e3.properties, 'category') AS Nullable(String)) = 'String'
            THEN JSONExtractString(e3.properties, 'category')
            WHEN JSONHas(e3.properties, 'category')
            THEN JSONExtractRaw(e3.properties, 'category')
          END
        END,
        tuple(e3.timestamp_ms, e3.message_id)
      )
    FROM ev AS e3
    WHERE
      (
        e3.profile_id = p.profile_id
        AND (
          e3.type = 'track' AND e3.event = 'Product Viewed'
        )
        AND e3.timestamp_ms <= {at_ms: Int64} - 0
      )
      AND NOT (
        CASE
          WHEN CAST(JSONType(e3.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
          THEN CASE
            WHEN CAST(JSONType(e3.properties, 'category') AS Nullable(String)) = 'String'
            THEN JSONExtractString(e3.properties, 'category')
            WHEN JSONHas(e3.properties, 'category')
            THEN JSONExtractRaw(e3.properties, 'category')
          END
        END IS NULL
      )
  ) AS "first_category",
  (
    SELECT
      argMax(
        CASE
          WHEN CAST(JSONType(e4.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
          THEN CASE
            WHEN CAST(JSONType(e4.properties, 'category') AS Nullable(String)) = 'String'
            THEN JSONExtractString(e4.properties, 'category')
            WHEN JSONHas(e4.properties, 'category')
            THEN JSONExtractRaw(e4.properties, 'category')
          END
        END,
        tuple(e4.timestamp_ms, e4.message_id)
      )
    FROM ev AS e4
    WHERE
      (
        e4.profile_id = p.profile_id
        AND (
          e4.type = 'track' AND e4.event = 'Product Viewed'
        )
        AND e4.timestamp_ms <= {at_ms: Int64} - 0
      )
      AND NOT (
        CASE
          WHEN CAST(JSONType(e4.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
          THEN CASE
            WHEN CAST(JSONType(e4.properties, 'category') AS Nullable(String)) = 'String'
            THEN JSONExtractString(e4.properties, 'category')
            WHEN JSONHas(e4.properties, 'category')
            THEN JSONExtractRaw(e4.properties, 'category')
          END
        END IS NULL
      )
  ) AS "last_category",
  COALESCE(
    (
      SELECT
        COALESCE(
          arraySort(
            groupUniqArray(
              CASE
                WHEN CAST(JSONType(e5.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
                THEN CASE
                  WHEN CAST(JSONType(e5.properties, 'category') AS Nullable(String)) = 'String'
                  THEN JSONExtractString(e5.properties, 'category')
                  WHEN JSONHas(e5.properties, 'category')
                  THEN JSONExtractRaw(e5.properties, 'category')
                END
              END
            )
          ),
          []
        )
      FROM ev AS e5
      WHERE
        (
          e5.profile_id = p.profile_id
          AND (
            e5.type = 'track' AND e5.event = 'Product Viewed'
          )
          AND e5.timestamp_ms <= {at_ms: Int64} - 0
        )
        AND NOT (
          CASE
            WHEN CAST(JSONType(e5.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
            THEN CASE
              WHEN CAST(JSONType(e5.properties, 'category') AS Nullable(String)) = 'String'
              THEN JSONExtractString(e5.properties, 'category')
              WHEN JSONHas(e5.properties, 'category')
              THEN JSONExtractRaw(e5.properties, 'category')
            END
          END IS NULL
        )
    ),
    []
  ) AS "categories_seen",
  COALESCE(
    (
      SELECT
        COUNT(
          DISTINCT CASE
            WHEN CAST(JSONType(e6.properties, 'category') AS Nullable(String)) IN ('String', 'Int64', 'UInt64', 'Bool')
            THEN CASE
              WHEN CAST(JSONType(e6.properties, 'category') AS Nullable(String)) = 'String'
              THEN JSONExtractString(e6.properties, 'category')
              WHEN JSONHas(e6.properties, 'category')
              THEN JSONExtractRaw(e6.properties, 'category')
            END
          END
        )
      FROM ev AS e6
      WHERE
        e6.profile_id = p.profile_id
        AND (
          e6.type = 'track' AND e6.event = 'Product Viewed'
        )
        AND e6.timestamp_ms <= {at_ms: Int64} - 0
    ),
    0
  ) AS "category_count",
  (
    SELECT
      MAX(
        CASE
          WHEN CAST(JSONType(e7.properties, 'revenue') AS Nullable(String)) IN ('Int64', 'UInt64', 'Double')
          THEN JSONExtract(e7.properties, 'revenue', 'Nullable(Float64)')
        END
      )
    FROM ev AS e7
    WHERE
      e7.profile_id = p.profile_id
      AND (
        e7.type = 'track' AND e7.event = 'Order Completed'
      )
      AND e7.timestamp_ms <= {at_ms: Int64} - 0
  ) AS "max_order"
FROM profiles AS p
ORDER BY
  p.profile_id
