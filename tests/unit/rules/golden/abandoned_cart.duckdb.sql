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
      ) IS NULL
      AND (
        SELECT
          MAX(e0.timestamp_ms)
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id
          AND (
            e0.type = 'track' AND e0.event = 'Product Added'
          )
      ) + 3600000 <= $at_ms
      AND NOT EXISTS(
        SELECT
          1
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
          AND (
            e1.type = 'track' AND e1.event = 'Order Completed'
          )
          AND e1.timestamp_ms > (
            SELECT
              MAX(e0.timestamp_ms)
            FROM ev AS e0
            WHERE
              e0.profile_id = p.profile_id
              AND (
                e0.type = 'track' AND e0.event = 'Product Added'
              )
          )
          AND e1.timestamp_ms <= (
            SELECT
              MAX(e0.timestamp_ms)
            FROM ev AS e0
            WHERE
              e0.profile_id = p.profile_id
              AND (
                e0.type = 'track' AND e0.event = 'Product Added'
              )
          ) + 3600000
      )
    ),
    FALSE
  )
ORDER BY
  p.profile_id
