WITH ev AS (
  SELECT
    *
  FROM profile_events
  WHERE
    timestamp_ms <= %(at_ms)s
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
      AND e0.timestamp_ms <= %(at_ms)s - 0
      AND e0.timestamp_ms > %(at_ms)s - 7776000000
  ) AS "orders_90d",
  (
    SELECT
      COALESCE(
        SUM(
          CASE
            WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
            THEN CASE
              WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
              THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e1.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
            END
          END
        ),
        CAST(0 AS DOUBLE PRECISION)
      )
    FROM ev AS e1
    WHERE
      e1.profile_id = p.profile_id
      AND (
        e1.type = 'track' AND e1.event = 'Order Completed'
      )
      AND e1.timestamp_ms <= %(at_ms)s - 0
  ) AS "lifetime_revenue",
  (
    SELECT
      CASE
        WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category')) IN ('string', 'boolean')
        OR (
          JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category')) = 'number'
          AND CAST(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
        )
        THEN JSON_EXTRACT_PATH_TEXT(CAST(e2.properties AS JSON), 'category')
      END
    FROM ev AS e2
    WHERE
      (
        e2.profile_id = p.profile_id
        AND (
          e2.type = 'track' AND e2.event = 'Product Viewed'
        )
        AND e2.timestamp_ms <= %(at_ms)s - 0
      )
      AND NOT CASE
        WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category')) IN ('string', 'boolean')
        OR (
          JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category')) = 'number'
          AND CAST(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
        )
        THEN JSON_EXTRACT_PATH_TEXT(CAST(e2.properties AS JSON), 'category')
      END IS NULL
    GROUP BY
      CASE
        WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category')) IN ('string', 'boolean')
        OR (
          JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category')) = 'number'
          AND CAST(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
        )
        THEN JSON_EXTRACT_PATH_TEXT(CAST(e2.properties AS JSON), 'category')
      END
    ORDER BY
      COUNT(*) DESC NULLS LAST,
      CASE
        WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category')) IN ('string', 'boolean')
        OR (
          JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category')) = 'number'
          AND CAST(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
        )
        THEN JSON_EXTRACT_PATH_TEXT(CAST(e2.properties AS JSON), 'category')
      END COLLATE "C"
    LIMIT 1
  ) AS "favourite_category",
  (
    SELECT
      CASE
        WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e3.properties AS JSON), 'category')) IN ('string', 'boolean')
        OR (
          JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e3.properties AS JSON), 'category')) = 'number'
          AND CAST(JSON_EXTRACT_PATH(CAST(e3.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
        )
        THEN JSON_EXTRACT_PATH_TEXT(CAST(e3.properties AS JSON), 'category')
      END
    FROM ev AS e3
    WHERE
      (
        e3.profile_id = p.profile_id
        AND (
          e3.type = 'track' AND e3.event = 'Product Viewed'
        )
        AND e3.timestamp_ms <= %(at_ms)s - 0
      )
      AND NOT CASE
        WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e3.properties AS JSON), 'category')) IN ('string', 'boolean')
        OR (
          JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e3.properties AS JSON), 'category')) = 'number'
          AND CAST(JSON_EXTRACT_PATH(CAST(e3.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
        )
        THEN JSON_EXTRACT_PATH_TEXT(CAST(e3.properties AS JSON), 'category')
      END IS NULL
    ORDER BY
      e3.timestamp_ms ASC,
      e3.message_id ASC
    LIMIT 1
  ) AS "first_category",
  (
    SELECT
      CASE
        WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'category')) IN ('string', 'boolean')
        OR (
          JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'category')) = 'number'
          AND CAST(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
        )
        THEN JSON_EXTRACT_PATH_TEXT(CAST(e4.properties AS JSON), 'category')
      END
    FROM ev AS e4
    WHERE
      (
        e4.profile_id = p.profile_id
        AND (
          e4.type = 'track' AND e4.event = 'Product Viewed'
        )
        AND e4.timestamp_ms <= %(at_ms)s - 0
      )
      AND NOT CASE
        WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'category')) IN ('string', 'boolean')
        OR (
          JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'category')) = 'number'
          AND CAST(JSON_EXTRACT_PATH(CAST(e4.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
        )
        THEN JSON_EXTRACT_PATH_TEXT(CAST(e4.properties AS JSON), 'category')
      END IS NULL
    ORDER BY
      e4.timestamp_ms DESC NULLS LAST,
      e4.message_id DESC NULLS LAST
    LIMIT 1
  ) AS "last_category",
  (
    SELECT
      COALESCE(
        ARRAY_AGG(
          DISTINCT CASE
            WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e5.properties AS JSON), 'category')) IN ('string', 'boolean')
            OR (
              JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e5.properties AS JSON), 'category')) = 'number'
              AND CAST(JSON_EXTRACT_PATH(CAST(e5.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
            )
            THEN JSON_EXTRACT_PATH_TEXT(CAST(e5.properties AS JSON), 'category')
          END COLLATE "C" ORDER BY CASE
            WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e5.properties AS JSON), 'category')) IN ('string', 'boolean')
            OR (
              JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e5.properties AS JSON), 'category')) = 'number'
              AND CAST(JSON_EXTRACT_PATH(CAST(e5.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
            )
            THEN JSON_EXTRACT_PATH_TEXT(CAST(e5.properties AS JSON), 'category')
          END COLLATE "C"
        ),
        CAST(ARRAY[] AS TEXT[])
      )
    FROM ev AS e5
    WHERE
      (
        e5.profile_id = p.profile_id
        AND (
          e5.type = 'track' AND e5.event = 'Product Viewed'
        )
        AND e5.timestamp_ms <= %(at_ms)s - 0
      )
      AND NOT CASE
        WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e5.properties AS JSON), 'category')) IN ('string', 'boolean')
        OR (
          JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e5.properties AS JSON), 'category')) = 'number'
          AND CAST(JSON_EXTRACT_PATH(CAST(e5.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
        )
        THEN JSON_EXTRACT_PATH_TEXT(CAST(e5.properties AS JSON), 'category')
      END IS NULL
  ) AS "categories_seen",
  (
    SELECT
      COUNT(
        DISTINCT CASE
          WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e6.properties AS JSON), 'category')) IN ('string', 'boolean')
          OR (
            JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e6.properties AS JSON), 'category')) = 'number'
            AND CAST(JSON_EXTRACT_PATH(CAST(e6.properties AS JSON), 'category') AS TEXT) ~ '^-?[0-9]+$'
          )
          THEN JSON_EXTRACT_PATH_TEXT(CAST(e6.properties AS JSON), 'category')
        END
      )
    FROM ev AS e6
    WHERE
      e6.profile_id = p.profile_id
      AND (
        e6.type = 'track' AND e6.event = 'Product Viewed'
      )
      AND e6.timestamp_ms <= %(at_ms)s - 0
  ) AS "category_count",
  (
    SELECT
      MAX(
        CASE
          WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e7.properties AS JSON), 'revenue')) = 'number'
          THEN CASE
            WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e7.properties AS JSON), 'revenue')) = 'number'
            THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e7.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
          END
        END
      )
    FROM ev AS e7
    WHERE
      e7.profile_id = p.profile_id
      AND (
        e7.type = 'track' AND e7.event = 'Order Completed'
      )
      AND e7.timestamp_ms <= %(at_ms)s - 0
  ) AS "max_order"
FROM profiles AS p
ORDER BY
  p.profile_id
