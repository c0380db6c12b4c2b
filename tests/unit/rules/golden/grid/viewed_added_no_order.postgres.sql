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
        FROM seq0 AS e2
        WHERE
          e2.profile_id = p.profile_id
          AND e2.at_ms = t.at_ms
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
              AND e3.timestamp_ms <= e2.at_ms
          )
      )
    ),
    FALSE
  )
ORDER BY
  t.at_ms,
  p.profile_id
