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
      NOT EXISTS(
        SELECT
          1
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id
          AND NOT e0.user_id IS NULL
          AND e0.timestamp_ms <= t.at_ms
      )
    ),
    FALSE
  )
  AND COALESCE(
    (
      (
        SELECT
          CAST(MIN(e1.timestamp_ms) AS DOUBLE)
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id AND e1.timestamp_ms <= t.at_ms
      ) <= t.at_ms - 0
      AND (
        SELECT
          CAST(MIN(e1.timestamp_ms) AS DOUBLE)
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id AND e1.timestamp_ms <= t.at_ms
      ) > t.at_ms - 86400000
    ),
    FALSE
  )
  AND (
    COALESCE(
      (
        (
          SELECT
            COUNT(*)
          FROM ev AS e2
          WHERE
            e2.profile_id = p.profile_id
            AND (
              e2.type = 'track'
              AND e2.event = 'Products Searched'
              AND COALESCE(
                (
                  JSON_TYPE(e2.properties, '$.query') = 'VARCHAR'
                  AND (
                    e2.properties ->> '$.query'
                  ) = 'running shoes'
                ),
                FALSE
              )
            )
            AND e2.timestamp_ms <= t.at_ms - 0
            AND e2.timestamp_ms <= t.at_ms
        ) >= CAST(1 AS DOUBLE)
      ),
      FALSE
    )
    OR COALESCE(
      (
        (
          SELECT
            COUNT(*)
          FROM ev AS e3
          WHERE
            e3.profile_id = p.profile_id
            AND (
              e3.type = 'track'
              AND e3.event = 'Product Viewed'
              AND COALESCE(
                (
                  JSON_TYPE(e3.properties, '$.category') = 'VARCHAR'
                  AND (
                    e3.properties ->> '$.category'
                  ) = 'shoes'
                ),
                FALSE
              )
            )
            AND e3.timestamp_ms <= t.at_ms - 0
            AND e3.timestamp_ms <= t.at_ms
        ) >= CAST(2 AS DOUBLE)
      ),
      FALSE
    )
  )
ORDER BY
  t.at_ms,
  p.profile_id
