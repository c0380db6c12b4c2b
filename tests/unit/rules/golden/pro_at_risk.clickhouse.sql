WITH ev AS (
  SELECT
    *
  FROM profile_events
  WHERE
    timestamp_ms <= {at_ms: Int64}
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
      CAST(JSONType(
        (
          SELECT
            argMax(JSONExtractRaw(e0.traits, 'plan'), tuple(e0.timestamp_ms, e0.message_id))
          FROM ev AS e0
          WHERE
            e0.profile_id = p.profile_id
            AND (
              e0.type = 'identify' AND JSONHas(e0.traits, 'plan')
            )
        )
      ) AS Nullable(String)) = 'String'
      AND CASE
        WHEN CAST(JSONType(
          (
            SELECT
              argMax(JSONExtractRaw(e0.traits, 'plan'), tuple(e0.timestamp_ms, e0.message_id))
            FROM ev AS e0
            WHERE
              e0.profile_id = p.profile_id
              AND (
                e0.type = 'identify' AND JSONHas(e0.traits, 'plan')
              )
          )
        ) AS Nullable(String)) = 'String'
        THEN JSONExtractString(
          (
            SELECT
              argMax(JSONExtractRaw(e0.traits, 'plan'), tuple(e0.timestamp_ms, e0.message_id))
            FROM ev AS e0
            WHERE
              e0.profile_id = p.profile_id
              AND (
                e0.type = 'identify' AND JSONHas(e0.traits, 'plan')
              )
          )
        )
        WHEN NOT (
          (
            SELECT
              argMax(JSONExtractRaw(e0.traits, 'plan'), tuple(e0.timestamp_ms, e0.message_id))
            FROM ev AS e0
            WHERE
              e0.profile_id = p.profile_id
              AND (
                e0.type = 'identify' AND JSONHas(e0.traits, 'plan')
              )
          ) IS NULL
        )
        THEN JSONExtractRaw(
          (
            SELECT
              argMax(JSONExtractRaw(e0.traits, 'plan'), tuple(e0.timestamp_ms, e0.message_id))
            FROM ev AS e0
            WHERE
              e0.profile_id = p.profile_id
              AND (
                e0.type = 'identify' AND JSONHas(e0.traits, 'plan')
              )
          )
        )
      END = 'pro'
    ),
    FALSE
  )
  AND COALESCE(
    (
      NOT (
        (
          SELECT
            argMax(JSONExtractRaw(e1.traits, 'email'), tuple(e1.timestamp_ms, e1.message_id))
          FROM ev AS e1
          WHERE
            e1.profile_id = p.profile_id
            AND (
              e1.type = 'identify' AND JSONHas(e1.traits, 'email')
            )
        ) IS NULL
      )
      AND CAST(JSONType(
        (
          SELECT
            argMax(JSONExtractRaw(e1.traits, 'email'), tuple(e1.timestamp_ms, e1.message_id))
          FROM ev AS e1
          WHERE
            e1.profile_id = p.profile_id
            AND (
              e1.type = 'identify' AND JSONHas(e1.traits, 'email')
            )
        )
      ) AS Nullable(String)) <> 'Null'
    ),
    FALSE
  )
  AND COALESCE(
    (
      CASE
        WHEN CAST(JSONType(
          (
            SELECT
              argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
            FROM ev AS e2
            WHERE
              e2.profile_id = p.profile_id
              AND (
                e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
              )
          )
        ) AS Nullable(String)) IN ('Int64', 'UInt64', 'Double')
        THEN JSONExtract(
          (
            SELECT
              argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
            FROM ev AS e2
            WHERE
              e2.profile_id = p.profile_id
              AND (
                e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
              )
          ),
          'Nullable(Float64)'
        )
        WHEN CAST(JSONType(
          (
            SELECT
              argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
            FROM ev AS e2
            WHERE
              e2.profile_id = p.profile_id
              AND (
                e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
              )
          )
        ) AS Nullable(String)) = 'String'
        THEN CASE
          WHEN match(
            CASE
              WHEN CAST(JSONType(
                (
                  SELECT
                    argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
                  FROM ev AS e2
                  WHERE
                    e2.profile_id = p.profile_id
                    AND (
                      e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
                    )
                )
              ) AS Nullable(String)) = 'String'
              THEN JSONExtractString(
                (
                  SELECT
                    argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
                  FROM ev AS e2
                  WHERE
                    e2.profile_id = p.profile_id
                    AND (
                      e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
                    )
                )
              )
              WHEN NOT (
                (
                  SELECT
                    argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
                  FROM ev AS e2
                  WHERE
                    e2.profile_id = p.profile_id
                    AND (
                      e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
                    )
                ) IS NULL
              )
              THEN JSONExtractRaw(
                (
                  SELECT
                    argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
                  FROM ev AS e2
                  WHERE
                    e2.profile_id = p.profile_id
                    AND (
                      e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
                    )
                )
              )
            END,
            '^[0-9]{4}-[0-9]{2}-[0-9]{2}'
          )
          THEN CAST(toUnixTimestamp64Milli(
            parseDateTime64BestEffortOrNull(
              CASE
                WHEN CAST(JSONType(
                  (
                    SELECT
                      argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
                    FROM ev AS e2
                    WHERE
                      e2.profile_id = p.profile_id
                      AND (
                        e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
                      )
                  )
                ) AS Nullable(String)) = 'String'
                THEN JSONExtractString(
                  (
                    SELECT
                      argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
                    FROM ev AS e2
                    WHERE
                      e2.profile_id = p.profile_id
                      AND (
                        e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
                      )
                  )
                )
                WHEN NOT (
                  (
                    SELECT
                      argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
                    FROM ev AS e2
                    WHERE
                      e2.profile_id = p.profile_id
                      AND (
                        e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
                      )
                  ) IS NULL
                )
                THEN JSONExtractRaw(
                  (
                    SELECT
                      argMax(JSONExtractRaw(e2.traits, 'created_at'), tuple(e2.timestamp_ms, e2.message_id))
                    FROM ev AS e2
                    WHERE
                      e2.profile_id = p.profile_id
                      AND (
                        e2.type = 'identify' AND JSONHas(e2.traits, 'created_at')
                      )
                  )
                )
              END,
              3,
              'UTC'
            )
          ) AS Nullable(Float64))
        END
      END <= {at_ms: Int64} - 2592000000
    ),
    FALSE
  )
  AND COALESCE(
    (
      CAST((
        SELECT
          any(e3.score)
        FROM profile_scores AS e3
        WHERE
          e3.profile_id = p.profile_id AND e3.model = 'churn'
      ) AS Nullable(Float64)) >= CAST(0.7 AS Nullable(Float64))
    ),
    FALSE
  )
  AND COALESCE(
    (
      (
        SELECT
          any(e4.cluster)
        FROM profile_clusters AS e4
        WHERE
          e4.profile_id = p.profile_id AND e4.model = 'customer_segments'
      ) = 'High spenders'
    ),
    FALSE
  )
ORDER BY
  p.profile_id
