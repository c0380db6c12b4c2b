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
), seq0 AS (
  SELECT
    e0.profile_id AS profile_id,
    MAX(e0.timestamp_ms) AS anchor
  FROM ev AS e0
  WHERE
    e0.type = 'track' AND e0.event = 'Product Added'
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
        FROM seq0 AS e1
        WHERE
          e1.profile_id = p.profile_id
          AND e1.anchor + 3600000 <= %(at_ms)s
          AND NOT EXISTS(
            SELECT
              1
            FROM ev AS e2
            WHERE
              e2.profile_id = e1.profile_id
              AND (
                e2.type = 'track' AND e2.event = 'Order Completed'
              )
              AND e2.timestamp_ms > e1.anchor
              AND e2.timestamp_ms <= e1.anchor + 3600000
          )
      )
    ),
    FALSE
  )
ORDER BY
  p.profile_id
