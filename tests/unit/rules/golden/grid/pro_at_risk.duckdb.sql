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
      JSON_TYPE(
        (
          SELECT
            e0.traits -> '$.plan'
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND (
              e0.type = 'identify' AND NOT JSON_TYPE(e0.traits, '$.plan') IS NULL
            )
            AND e0.timestamp_ms <= t.at_ms
          ORDER BY
            e0.timestamp_ms DESC,
            e0.message_id DESC
          LIMIT 1
        ),
        '$'
      ) = 'VARCHAR'
      AND (
        (
          SELECT
            e0.traits -> '$.plan'
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND (
              e0.type = 'identify' AND NOT JSON_TYPE(e0.traits, '$.plan') IS NULL
            )
            AND e0.timestamp_ms <= t.at_ms
          ORDER BY
            e0.timestamp_ms DESC,
            e0.message_id DESC
          LIMIT 1
        ) ->> '$'
      ) = 'pro'
    ),
    FALSE
  )
  AND COALESCE(
    (
      NOT JSON_TYPE(
        (
          SELECT
            e1.traits -> '$.email'
          FROM ev AS e1
          WHERE
            e1.profile_id = p.profile_id
            AND (
              e1.type = 'identify' AND NOT JSON_TYPE(e1.traits, '$.email') IS NULL
            )
            AND e1.timestamp_ms <= t.at_ms
          ORDER BY
            e1.timestamp_ms DESC,
            e1.message_id DESC
          LIMIT 1
        ),
        '$'
      ) IS NULL
      AND JSON_TYPE(
        (
          SELECT
            e1.traits -> '$.email'
          FROM ev AS e1
          WHERE
            e1.profile_id = p.profile_id
            AND (
              e1.type = 'identify' AND NOT JSON_TYPE(e1.traits, '$.email') IS NULL
            )
            AND e1.timestamp_ms <= t.at_ms
          ORDER BY
            e1.timestamp_ms DESC,
            e1.message_id DESC
          LIMIT 1
        ),
        '$'
      ) <> 'NULL'
    ),
    FALSE
  )
  AND COALESCE(
    (
      CASE
        WHEN JSON_TYPE(
          (
            SELECT
              e2.traits -> '$.created_at'
            FROM ev AS e2
            WHERE
              e2.profile_id = p.profile_id
              AND (
                e2.type = 'identify' AND NOT JSON_TYPE(e2.traits, '$.created_at') IS NULL
              )
              AND e2.timestamp_ms <= t.at_ms
            ORDER BY
              e2.timestamp_ms DESC,
              e2.message_id DESC
            LIMIT 1
          ),
          '$'
        ) IN ('BIGINT', 'UBIGINT', 'DOUBLE')
        THEN TRY_CAST((
          SELECT
            e2.traits -> '$.created_at'
          FROM ev AS e2
          WHERE
            e2.profile_id = p.profile_id
            AND (
              e2.type = 'identify' AND NOT JSON_TYPE(e2.traits, '$.created_at') IS NULL
            )
            AND e2.timestamp_ms <= t.at_ms
          ORDER BY
            e2.timestamp_ms DESC,
            e2.message_id DESC
          LIMIT 1
        ) ->> '$' AS DOUBLE)
        WHEN JSON_TYPE(
          (
            SELECT
              e2.traits -> '$.created_at'
            FROM ev AS e2
            WHERE
              e2.profile_id = p.profile_id
              AND (
                e2.type = 'identify' AND NOT JSON_TYPE(e2.traits, '$.created_at') IS NULL
              )
              AND e2.timestamp_ms <= t.at_ms
            ORDER BY
              e2.timestamp_ms DESC,
              e2.message_id DESC
            LIMIT 1
          ),
          '$'
        ) = 'VARCHAR'
        THEN CAST(EPOCH_MS(
          TRY_CAST((
            SELECT
              e2.traits -> '$.created_at'
            FROM ev AS e2
            WHERE
              e2.profile_id = p.profile_id
              AND (
                e2.type = 'identify' AND NOT JSON_TYPE(e2.traits, '$.created_at') IS NULL
              )
              AND e2.timestamp_ms <= t.at_ms
            ORDER BY
              e2.timestamp_ms DESC,
              e2.message_id DESC
            LIMIT 1
          ) ->> '$' AS TIMESTAMPTZ)
        ) AS DOUBLE)
      END <= t.at_ms - 2592000000
    ),
    FALSE
  )
  AND COALESCE(
    (
      CAST((
        SELECT
          e3.score
        FROM profile_scores AS e3
        WHERE
          e3.profile_id = p.profile_id AND e3.model = 'churn'
        LIMIT 1
      ) AS DOUBLE) >= CAST(0.7 AS DOUBLE)
    ),
    FALSE
  )
  AND COALESCE(
    (
      (
        SELECT
          e4.cluster
        FROM profile_clusters AS e4
        WHERE
          e4.profile_id = p.profile_id AND e4.model = 'customer_segments'
        LIMIT 1
      ) = 'High spenders'
    ),
    FALSE
  )
ORDER BY
  t.at_ms,
  p.profile_id
