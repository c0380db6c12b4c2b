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
      NOT (
        SELECT
          MAX(e0.timestamp_ms)
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id
          AND (
            e0.type = 'track' AND e0.event = 'Product Added'
          )
          AND EXISTS(
            SELECT
              1
            FROM ev AS e1
            WHERE
              e1.profile_id = e0.profile_id
              AND (
                e1.type = 'track' AND e1.event = 'Product Viewed'
              )
              AND e1.timestamp_ms < e0.timestamp_ms
              AND e0.timestamp_ms - e1.timestamp_ms <= 1800000
          )
      ) IS NULL
      AND NOT EXISTS(
        SELECT
          1
        FROM ev AS e2
        WHERE
          e2.profile_id = p.profile_id
          AND (
            e2.type = 'track' AND e2.event = 'Order Completed'
          )
          AND e2.timestamp_ms > (
            SELECT
              MAX(e0.timestamp_ms)
            FROM ev AS e0
            WHERE
              e0.profile_id = p.profile_id
              AND (
                e0.type = 'track' AND e0.event = 'Product Added'
              )
              AND EXISTS(
                SELECT
                  1
                FROM ev AS e1
                WHERE
                  e1.profile_id = e0.profile_id
                  AND (
                    e1.type = 'track' AND e1.event = 'Product Viewed'
                  )
                  AND e1.timestamp_ms < e0.timestamp_ms
                  AND e0.timestamp_ms - e1.timestamp_ms <= 1800000
              )
          )
      )
    ),
    FALSE
  )
ORDER BY
  p.profile_id
