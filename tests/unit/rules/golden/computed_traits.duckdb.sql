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
  p.profile_id,
  (
    SELECT
      COUNT(*)
    FROM ev AS e0
    WHERE
      e0.profile_id = p.profile_id
      AND (
        e0.type = 'track' AND e0.event = 'Order Completed'
      )
      AND e0.timestamp_ms <= $at_ms - 0
      AND e0.timestamp_ms > $at_ms - 7776000000
  ) AS "orders_90d",
  (
    SELECT
      COALESCE(
        SUM(
          CASE
            WHEN JSON_TYPE(e1.properties, '$.revenue') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
            THEN TRY_CAST(e1.properties ->> '$.revenue' AS DOUBLE)
          END
        ),
        CAST(0 AS DOUBLE)
      )
    FROM ev AS e1
    WHERE
      e1.profile_id = p.profile_id
      AND (
        e1.type = 'track' AND e1.event = 'Order Completed'
      )
      AND e1.timestamp_ms <= $at_ms - 0
  ) AS "lifetime_revenue",
  (
    SELECT
      CASE
        WHEN JSON_TYPE(e2.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
        THEN e2.properties ->> '$.category'
      END
    FROM ev AS e2
    WHERE
      (
        e2.profile_id = p.profile_id
        AND (
          e2.type = 'track' AND e2.event = 'Product Viewed'
        )
        AND e2.timestamp_ms <= $at_ms - 0
      )
      AND NOT CASE
        WHEN JSON_TYPE(e2.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
        THEN e2.properties ->> '$.category'
      END IS NULL
    GROUP BY
      CASE
        WHEN JSON_TYPE(e2.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
        THEN e2.properties ->> '$.category'
      END
    ORDER BY
      COUNT(*) DESC,
      CASE
        WHEN JSON_TYPE(e2.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
        THEN e2.properties ->> '$.category'
      END
    LIMIT 1
  ) AS "favourite_category",
  (
    SELECT
      CASE
        WHEN JSON_TYPE(e3.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
        THEN e3.properties ->> '$.category'
      END
    FROM ev AS e3
    WHERE
      (
        e3.profile_id = p.profile_id
        AND (
          e3.type = 'track' AND e3.event = 'Product Viewed'
        )
        AND e3.timestamp_ms <= $at_ms - 0
      )
      AND NOT CASE
        WHEN JSON_TYPE(e3.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
        THEN e3.properties ->> '$.category'
      END IS NULL
    ORDER BY
      e3.timestamp_ms ASC,
      e3.message_id ASC
    LIMIT 1
  ) AS "first_category",
  (
    SELECT
      CASE
        WHEN JSON_TYPE(e4.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
        THEN e4.properties ->> '$.category'
      END
    FROM ev AS e4
    WHERE
      (
        e4.profile_id = p.profile_id
        AND (
          e4.type = 'track' AND e4.event = 'Product Viewed'
        )
        AND e4.timestamp_ms <= $at_ms - 0
      )
      AND NOT CASE
        WHEN JSON_TYPE(e4.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
        THEN e4.properties ->> '$.category'
      END IS NULL
    ORDER BY
      e4.timestamp_ms DESC,
      e4.message_id DESC
    LIMIT 1
  ) AS "last_category",
  (
    SELECT
      COALESCE(
        LIST_SORT(
          ARRAY_AGG(
            DISTINCT CASE
              WHEN JSON_TYPE(e5.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
              THEN e5.properties ->> '$.category'
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
        AND e5.timestamp_ms <= $at_ms - 0
      )
      AND NOT CASE
        WHEN JSON_TYPE(e5.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
        THEN e5.properties ->> '$.category'
      END IS NULL
  ) AS "categories_seen",
  (
    SELECT
      COUNT(
        DISTINCT CASE
          WHEN JSON_TYPE(e6.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
          THEN e6.properties ->> '$.category'
        END
      )
    FROM ev AS e6
    WHERE
      e6.profile_id = p.profile_id
      AND (
        e6.type = 'track' AND e6.event = 'Product Viewed'
      )
      AND e6.timestamp_ms <= $at_ms - 0
  ) AS "category_count",
  (
    SELECT
      MAX(
        CASE
          WHEN JSON_TYPE(e7.properties, '$.revenue') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
          THEN TRY_CAST(e7.properties ->> '$.revenue' AS DOUBLE)
        END
      )
    FROM ev AS e7
    WHERE
      e7.profile_id = p.profile_id
      AND (
        e7.type = 'track' AND e7.event = 'Order Completed'
      )
      AND e7.timestamp_ms <= $at_ms - 0
  ) AS "max_order"
FROM profiles AS p
ORDER BY
  p.profile_id
