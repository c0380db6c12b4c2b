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
          COUNT(DISTINCT DIV((
            %(at_ms)s - e0.timestamp_ms
          ), 86400000))
        FROM ev AS e0
        WHERE
          e0.profile_id = p.profile_id
          AND TRUE
          AND e0.timestamp_ms <= %(at_ms)s - 0
          AND e0.timestamp_ms > %(at_ms)s - 2592000000
      ) >= 8
    ),
    FALSE
  )
  OR COALESCE(
    (
      (
        SELECT
          COUNT(
            DISTINCT CASE
              WHEN JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'session_id')) IN ('string', 'boolean')
              OR (
                JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'session_id')) = 'number'
                AND CAST(JSON_EXTRACT_PATH(CAST(e1.properties AS JSON), 'session_id') AS TEXT) ~ '^-?[0-9]+$'
              )
              THEN JSON_EXTRACT_PATH_TEXT(CAST(e1.properties AS JSON), 'session_id')
            END
          )
        FROM ev AS e1
        WHERE
          e1.profile_id = p.profile_id
          AND TRUE
          AND e1.timestamp_ms <= %(at_ms)s - 0
          AND e1.timestamp_ms > %(at_ms)s - 2592000000
      ) >= CAST(8 AS DOUBLE PRECISION)
    ),
    FALSE
  )
ORDER BY
  p.profile_id
