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
          CAST(MIN(e1.timestamp_ms) AS DOUBLE PRECISION)
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
      ) <= %(at_ms)s - 0
      AND (
        SELECT
          CAST(MIN(e1.timestamp_ms) AS DOUBLE PRECISION)
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
      ) > %(at_ms)s - 86400000
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
                  JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.properties AS JSON), 'query')) = 'string'
                  AND JSON_EXTRACT_PATH_TEXT(CAST(e2.properties AS JSON), 'query') = 'running shoes'
                ),
                FALSE
              )
            )
            AND e2.timestamp_ms <= %(at_ms)s - 0
        ) >= CAST(1 AS DOUBLE PRECISION)
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
                  JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e3.properties AS JSON), 'category')) = 'string'
                  AND JSON_EXTRACT_PATH_TEXT(CAST(e3.properties AS JSON), 'category') = 'shoes'
                ),
                FALSE
              )
            )
            AND e3.timestamp_ms <= %(at_ms)s - 0
        ) >= CAST(2 AS DOUBLE PRECISION)
      ),
      FALSE
    )
  )
ORDER BY
  p.profile_id
