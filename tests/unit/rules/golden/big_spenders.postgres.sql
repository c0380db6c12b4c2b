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
      (
        SELECT
          COALESCE(
            SUM(
              CASE
                WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e0.properties AS JSON), 'revenue')) = 'number'
                THEN CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e0.properties AS JSON), 'revenue')) = 'number'
                  THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e0.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                END
              END
            ),
            CAST(0 AS DOUBLE PRECISION)
          )
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id
          AND (
            e0.type = 'track' AND e0.event = 'Order Completed'
          )
          AND e0.timestamp_ms <= %(at_ms)s - 0
          AND e0.timestamp_ms > %(at_ms)s - 7776000000
      ) >= CAST(400 AS DOUBLE PRECISION)
    ),
    FALSE
  )
  AND COALESCE(
    (
      (
        SELECT
          CASE
            WHEN COUNT(
              CASE
                WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                THEN CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                  THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e1.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                END
              END
            ) > 0
            THEN CAST(SUM(
              CASE
                WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                THEN CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                  THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e1.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                END
              END
            ) AS DOUBLE PRECISION) / COUNT(
              CASE
                WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                THEN CASE
                  WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'revenue')) = 'number'
                  THEN CAST(JSON_EXTRACT_PATH_TEXT(CAST(e1.properties AS JSON), 'revenue') AS DOUBLE PRECISION)
                END
              END
            )
          END
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
          AND (
            e1.type = 'track' AND e1.event = 'Order Completed'
          )
          AND e1.timestamp_ms <= %(at_ms)s - 0
          AND e1.timestamp_ms > %(at_ms)s - 7776000000
      ) > CAST(100 AS DOUBLE PRECISION)
    ),
    FALSE
  )
ORDER BY
  p.profile_id
