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
), seq0 AS (
  SELECT
    e0.profile_id AS profile_id,
    MAX(e0.timestamp_ms) AS anchor
  FROM ev AS e0
  WHERE
    (
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
  GROUP BY
    e0.profile_id
)
SELECT
  p.profile_id
FROM profiles AS p
WHERE
  COALESCE(
    (
      EXISTS(
        SELECT
          1
        FROM seq0 AS e2
        WHERE
          e2.profile_id = p.profile_id
          AND NOT EXISTS(
            SELECT
              1
            FROM ev AS e3
            WHERE
              e3.profile_id = e2.profile_id
              AND (
                e3.type = 'track' AND e3.event = 'Order Completed'
              )
              AND e3.timestamp_ms > e2.anchor
          )
      )
    ),
    FALSE
  )
ORDER BY
  p.profile_id
