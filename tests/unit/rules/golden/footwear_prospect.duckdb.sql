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
      NOT EXISTS(
        SELECT
          1
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id AND NOT e0.user_id IS NULL
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
          e1.profile_id = p.profile_id
      ) <= $at_ms - 0
      AND (
        SELECT
          CAST(MIN(e1.timestamp_ms) AS DOUBLE)
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
      ) > $at_ms - 86400000
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
            AND e2.timestamp_ms <= $at_ms - 0
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
            AND e3.timestamp_ms <= $at_ms - 0
        ) >= CAST(2 AS DOUBLE)
      ),
      FALSE
    )
  )
ORDER BY
  p.profile_id
