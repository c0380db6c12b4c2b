WITH t AS (
  SELECT
    CAST(v.at_ms AS BIGINT) AS at_ms
  FROM (VALUES
    (0),
    (86400000)) AS v(at_ms)
), ev AS (
  SELECT
    *
  FROM profile_events
  WHERE
    timestamp_ms <= 86400000
), profiles AS (
  SELECT
    profile_id,
    MIN(timestamp_ms) AS first_ms
  FROM profile_events
  GROUP BY
    profile_id
), seq0 AS (
  SELECT
    e0.profile_id AS profile_id,
    MAX(e0.timestamp_ms) AS anchor,
    t.at_ms AS at_ms
  FROM ev AS e0
  JOIN t AS t
    ON e0.timestamp_ms <= t.at_ms
  WHERE
    e0.type = 'track' AND e0.event = 'Product Added'
  GROUP BY
    e0.profile_id,
    t.at_ms
)
SELECT
  t.at_ms,
  p.profile_id
FROM t AS t
JOIN profiles AS p
  ON p.first_ms <= t.at_ms
WHERE
  COALESCE(
    (
      EXISTS(
        SELECT
          1
        FROM seq0 AS e1
        WHERE
          e1.profile_id = p.profile_id
          AND e1.at_ms = t.at_ms
          AND e1.anchor + 3600000 <= t.at_ms
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
              AND e2.timestamp_ms <= e1.at_ms
              AND e2.timestamp_ms <= e1.anchor + 3600000
          )
      )
    ),
    FALSE
  )
ORDER BY
  t.at_ms,
  p.profile_id
