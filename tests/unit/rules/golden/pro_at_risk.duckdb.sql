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
            ORDER BY
              e2.timestamp_ms DESC,
              e2.message_id DESC
            LIMIT 1
          ) ->> '$' AS TIMESTAMPTZ)
        ) AS DOUBLE)
      END <= $at_ms - 2592000000
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
  p.profile_id
