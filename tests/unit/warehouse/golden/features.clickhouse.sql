WITH e AS (
  SELECT
    *
  FROM profile_events
  WHERE
    timestamp_ms <= {as_of: } AND NOT (
      profile_id IS NULL
    )
), sessions AS (
  SELECT
    profile_id,
    session_index,
    profile_id || ':' || CAST(session_index AS Nullable(String)) AS session_id,
    MIN(timestamp_ms) AS started_at_ms,
    MAX(timestamp_ms) AS ended_at_ms,
    MAX(timestamp_ms) - MIN(timestamp_ms) AS duration_ms,
    COUNT(*) AS event_count
  FROM (
    SELECT
      *,
      SUM(is_start) OVER (
        PARTITION BY profile_id
        ORDER BY timestamp_ms, message_id
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
      ) AS session_index
    FROM (
      SELECT
        *,
        CASE
          WHEN timestamp_ms - lag(timestamp_ms) OVER (PARTITION BY profile_id ORDER BY timestamp_ms, message_id) <= 1800000
          THEN 0
          ELSE 1
        END AS is_start
      FROM (
        SELECT
          profile_id,
          timestamp_ms,
          message_id
        FROM e
        WHERE
          type IN ('track', 'page', 'screen') AND NOT (
            profile_id IS NULL
          )
      ) AS a
    ) AS m
  ) AS n
  GROUP BY
    profile_id,
    session_index
), sess AS (
  SELECT
    profile_id,
    MAX(ended_at_ms) AS last_active_ms,
    COUNT(*) FILTER(WHERE
      ended_at_ms > {as_of: } - 2592000000) AS frequency_30d,
    AVG(duration_ms) / 60000.0 AS avg_session_duration
  FROM sessions
  GROUP BY
    profile_id
), n AS (
  SELECT
    COUNT(DISTINCT event) AS n_names
  FROM e
  WHERE
    type = 'track'
), custom_0 AS (
  SELECT
    profile_id,
    COUNT(*) FILTER(WHERE
      type = 'page') AS pages
  FROM e
  WHERE
    timestamp_ms > {as_of: } - 604800000
  GROUP BY
    profile_id
), agg AS (
  SELECT
    profile_id,
    MIN(timestamp_ms) AS first_ms,
    MAX(timestamp_ms) AS last_ms,
    COALESCE(
      SUM(
        toFloat64OrNull(
          CASE
            WHEN CAST(JSONType(properties, 'revenue') AS Nullable(String)) = 'String'
            THEN JSONExtractString(properties, 'revenue')
            WHEN JSONHas(properties, 'revenue')
            THEN JSONExtractRaw(properties, 'revenue')
          END
        )
      ) FILTER(WHERE
        event = 'Order Completed' AND timestamp_ms > {as_of: } - 7776000000),
      0.0
    ) AS monetary_value_90d,
    COUNT(*) FILTER(WHERE
      event = 'Order Completed' AND timestamp_ms > {as_of: } - 7776000000) AS orders_90d,
    COUNT(*) FILTER(WHERE
      event = 'Support Ticket Created' AND timestamp_ms > {as_of: } - 5184000000) AS support_tickets_60d,
    COUNT(DISTINCT event) FILTER(WHERE
      event IN ('Export')) / 1.0 AS feature_adoption_rate
  FROM e
  GROUP BY
    profile_id
), base AS (
  SELECT
    a.profile_id AS profile_id,
    (
      {as_of: } - COALESCE(s.last_active_ms, a.last_ms)
    ) / 86400000.0 AS recency,
    COALESCE(s.frequency_30d, 0) AS frequency_30d,
    a.monetary_value_90d,
    a.orders_90d,
    COALESCE(a.feature_adoption_rate, 0.0) AS feature_adoption_rate,
    a.support_tickets_60d,
    COALESCE(s.avg_session_duration, 0.0) AS avg_session_duration,
    (
      {as_of: } - a.first_ms
    ) / 86400000.0 AS tenure_days,
    custom_0.pages
  FROM agg AS a
  LEFT JOIN sess AS s
    ON s.profile_id = a.profile_id
  LEFT JOIN custom_0
    ON custom_0.profile_id = a.profile_id
)
SELECT
  *,
  CAST(CEIL(5 * cume_dist() OVER (ORDER BY recency DESC)) AS Nullable(Int32)) AS r_score,
  CAST(CEIL(5 * cume_dist() OVER (ORDER BY frequency_30d)) AS Nullable(Int32)) AS f_score,
  CAST(CEIL(5 * cume_dist() OVER (ORDER BY monetary_value_90d)) AS Nullable(Int32)) AS m_score
FROM base
ORDER BY
  profile_id NULLS FIRST
