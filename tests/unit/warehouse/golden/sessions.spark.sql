SELECT
  profile_id,
  session_index,
  profile_id || ':' || CAST(session_index AS STRING) AS session_id,
  MIN(timestamp_ms) AS started_at_ms,
  MAX(timestamp_ms) AS ended_at_ms,
  MAX(timestamp_ms) - MIN(timestamp_ms) AS duration_ms,
  COUNT(*) AS event_count,
  MIN_BY(source_id, timestamp_ms) AS source_id,
  MIN_BY(landing, timestamp_ms) AS landing_page
FROM (
  SELECT
    *,
    SUM(is_start) OVER (
      PARTITION BY profile_id
      ORDER BY timestamp_ms NULLS LAST, message_id NULLS LAST
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS session_index
  FROM (
    SELECT
      *,
      CASE
        WHEN timestamp_ms - LAG(timestamp_ms) OVER (PARTITION BY profile_id ORDER BY timestamp_ms NULLS LAST, message_id NULLS LAST) <= 1800000
        THEN 0
        ELSE 1
      END AS is_start
    FROM (
      SELECT
        profile_id,
        timestamp_ms,
        message_id,
        source_id,
        COALESCE(
          VARIANT_GET(PARSE_JSON(context), '$[\'page\'][\'url\']', 'STRING'),
          VARIANT_GET(PARSE_JSON(properties), '$[\'url\']', 'STRING')
        ) AS landing
      FROM profile_events
      WHERE
        type IN ('track', 'page', 'screen') AND NOT profile_id IS NULL
    ) AS a
  ) AS m
) AS n
GROUP BY
  profile_id,
  session_index
