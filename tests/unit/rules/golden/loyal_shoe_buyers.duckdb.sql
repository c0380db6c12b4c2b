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
  p.profile_id
FROM profiles AS p
WHERE
  COALESCE(
    (
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
      ) >= CAST(2 AS DOUBLE)
    ),
    FALSE
  )
  AND COALESCE(
    (
      (
        SELECT
          CASE
            WHEN JSON_TYPE(e1.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
            THEN e1.properties ->> '$.category'
          END
        FROM ev AS e1
        WHERE
          (
            e1.profile_id = p.profile_id
            AND (
              e1.type = 'track' AND e1.event = 'Product Viewed'
            )
            AND e1.timestamp_ms <= $at_ms - 0
          )
          AND NOT CASE
            WHEN JSON_TYPE(e1.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
            THEN e1.properties ->> '$.category'
          END IS NULL
        GROUP BY
          CASE
            WHEN JSON_TYPE(e1.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
            THEN e1.properties ->> '$.category'
          END
        ORDER BY
          COUNT(*) DESC,
          CASE
            WHEN JSON_TYPE(e1.properties, '$.category') IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'BOOLEAN')
            THEN e1.properties ->> '$.category'
          END
        LIMIT 1
      ) = 'shoes'
    ),
    FALSE
  )
ORDER BY
  p.profile_id
