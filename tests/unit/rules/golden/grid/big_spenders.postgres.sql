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
          AND e0.timestamp_ms <= t.at_ms - 0
          AND e0.timestamp_ms > t.at_ms - 7776000000
          AND e0.timestamp_ms <= t.at_ms
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
          AND e1.timestamp_ms <= t.at_ms - 0
          AND e1.timestamp_ms > t.at_ms - 7776000000
          AND e1.timestamp_ms <= t.at_ms
      ) > CAST(100 AS DOUBLE PRECISION)
    ),
    FALSE
  )
ORDER BY
  t.at_ms,
  p.profile_id
