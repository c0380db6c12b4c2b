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
      JSON_TYPEOF(
        CAST((
          SELECT
            JSON_EXTRACT_PATH(CAST(e0.traits AS JSON), 'plan')
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND (
              e0.type = 'identify'
              AND NOT JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e0.traits AS JSON), 'plan')) IS NULL
            )
            AND e0.timestamp_ms <= t.at_ms
          ORDER BY
            e0.timestamp_ms DESC NULLS LAST,
            e0.message_id DESC NULLS LAST
          LIMIT 1
        ) AS JSON)
      ) = 'string'
      AND JSON_EXTRACT_PATH_TEXT(
        JSON_BUILD_ARRAY(
          (
            SELECT
              JSON_EXTRACT_PATH(CAST(e0.traits AS JSON), 'plan')
            FROM ev AS e0
            WHERE
              e0.profile_id = p.profile_id
              AND (
                e0.type = 'identify'
                AND NOT JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e0.traits AS JSON), 'plan')) IS NULL
              )
              AND e0.timestamp_ms <= t.at_ms
            ORDER BY
              e0.timestamp_ms DESC NULLS LAST,
              e0.message_id DESC NULLS LAST
            LIMIT 1
          )
        ),
        '0'
      ) = 'pro'
    ),
    FALSE
  )
  AND COALESCE(
    (
      NOT JSON_TYPEOF(
        CAST((
          SELECT
            JSON_EXTRACT_PATH(CAST(e1.traits AS JSON), 'email')
          FROM ev AS e1
          WHERE
            e1.profile_id = p.profile_id
            AND (
              e1.type = 'identify'
              AND NOT JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.traits AS JSON), 'email')) IS NULL
            )
            AND e1.timestamp_ms <= t.at_ms
          ORDER BY
            e1.timestamp_ms DESC NULLS LAST,
            e1.message_id DESC NULLS LAST
          LIMIT 1
        ) AS JSON)
      ) IS NULL
      AND JSON_TYPEOF(
        CAST((
          SELECT
            JSON_EXTRACT_PATH(CAST(e1.traits AS JSON), 'email')
          FROM ev AS e1
          WHERE
            e1.profile_id = p.profile_id
            AND (
              e1.type = 'identify'
              AND NOT JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e1.traits AS JSON), 'email')) IS NULL
            )
            AND e1.timestamp_ms <= t.at_ms
          ORDER BY
            e1.timestamp_ms DESC NULLS LAST,
            e1.message_id DESC NULLS LAST
          LIMIT 1
        ) AS JSON)
      ) <> 'null'
    ),
    FALSE
  )
  AND COALESCE(
    (
      CASE
        WHEN JSON_TYPEOF(
          CAST((
            SELECT
              JSON_EXTRACT_PATH(CAST(e2.traits AS JSON), 'created_at')
            FROM ev AS e2
            WHERE
              e2.profile_id = p.profile_id
              AND (
                e2.type = 'identify'
                AND NOT JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.traits AS JSON), 'created_at')) IS NULL
              )
              AND e2.timestamp_ms <= t.at_ms
            ORDER BY
              e2.timestamp_ms DESC NULLS LAST,
              e2.message_id DESC NULLS LAST
            LIMIT 1
          ) AS JSON)
        ) = 'number'
        THEN CASE
          WHEN JSON_TYPEOF(
            CAST((
              SELECT
                JSON_EXTRACT_PATH(CAST(e2.traits AS JSON), 'created_at')
              FROM ev AS e2
              WHERE
                e2.profile_id = p.profile_id
                AND (
                  e2.type = 'identify'
                  AND NOT JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.traits AS JSON), 'created_at')) IS NULL
                )
                AND e2.timestamp_ms <= t.at_ms
              ORDER BY
                e2.timestamp_ms DESC NULLS LAST,
                e2.message_id DESC NULLS LAST
              LIMIT 1
            ) AS JSON)
          ) = 'number'
          THEN CAST(JSON_EXTRACT_PATH_TEXT(
            JSON_BUILD_ARRAY(
              (
                SELECT
                  JSON_EXTRACT_PATH(CAST(e2.traits AS JSON), 'created_at')
                FROM ev AS e2
                WHERE
                  e2.profile_id = p.profile_id
                  AND (
                    e2.type = 'identify'
                    AND NOT JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.traits AS JSON), 'created_at')) IS NULL
                  )
                  AND e2.timestamp_ms <= t.at_ms
                ORDER BY
                  e2.timestamp_ms DESC NULLS LAST,
                  e2.message_id DESC NULLS LAST
                LIMIT 1
              )
            ),
            '0'
          ) AS DOUBLE PRECISION)
        END
        WHEN JSON_TYPEOF(
          CAST((
            SELECT
              JSON_EXTRACT_PATH(CAST(e2.traits AS JSON), 'created_at')
            FROM ev AS e2
            WHERE
              e2.profile_id = p.profile_id
              AND (
                e2.type = 'identify'
                AND NOT JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.traits AS JSON), 'created_at')) IS NULL
              )
              AND e2.timestamp_ms <= t.at_ms
            ORDER BY
              e2.timestamp_ms DESC NULLS LAST,
              e2.message_id DESC NULLS LAST
            LIMIT 1
          ) AS JSON)
        ) = 'string'
        THEN SEGFLOW_EPOCH_MS(
          JSON_EXTRACT_PATH_TEXT(
            JSON_BUILD_ARRAY(
              (
                SELECT
                  JSON_EXTRACT_PATH(CAST(e2.traits AS JSON), 'created_at')
                FROM ev AS e2
                WHERE
                  e2.profile_id = p.profile_id
                  AND (
                    e2.type = 'identify'
                    AND NOT JSON_TYPEOF(JSON_EXTRACT_PATH(CAST(e2.traits AS JSON), 'created_at')) IS NULL
                  )
                  AND e2.timestamp_ms <= t.at_ms
                ORDER BY
                  e2.timestamp_ms DESC NULLS LAST,
                  e2.message_id DESC NULLS LAST
                LIMIT 1
              )
            ),
            '0'
          )
        )
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
      ) AS DOUBLE PRECISION) >= CAST(0.7 AS DOUBLE PRECISION)
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
