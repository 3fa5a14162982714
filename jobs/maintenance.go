package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgdb"
)

// maintenanceLoop takes part in leader election and, while leader, rescues
// jobs of dead clients, prunes finished jobs and inserts periodic jobs.
func (c *Client) maintenanceLoop(r *run) {
	defer r.bgWG.Done()
	tick := min(c.cfg.LeaseDuration/3, 500*time.Millisecond)
	var lastRescue, lastPrune time.Time
	for {
		ctx, cancel := context.WithTimeout(r.ctx, c.cfg.LeaseDuration/3)
		leader, err := c.elect(ctx)
		if err != nil && r.ctx.Err() == nil {
			c.log.Warn("jobs: leader election failed", "err", err)
		}
		was := c.leader.Swap(leader)
		if leader && !was {
			c.log.Info("jobs: became leader", "client", c.id)
		}
		if leader {
			now := time.Now()
			if now.Sub(lastRescue) >= c.cfg.RescueInterval {
				if err := c.Rescue(ctx); err != nil && r.ctx.Err() == nil {
					c.log.Warn("jobs: rescue failed", "err", err)
				}
				lastRescue = now
			}
			if now.Sub(lastPrune) >= c.cfg.PruneInterval {
				if _, err := c.Prune(ctx); err != nil && r.ctx.Err() == nil {
					c.log.Warn("jobs: prune failed", "err", err)
				}
				lastPrune = now
			}
			c.runPeriodic(ctx, now, 2*c.cfg.LeaseDuration)
		}
		cancel()
		if !sleepCtx(r.ctx, tick) {
			return
		}
	}
}

func (c *Client) elect(ctx context.Context) (bool, error) {
	var id string
	err := pgdb.Retry(ctx, c.pool, func() error {
		return c.pool.QueryRow(ctx, c.sql.leader, c.id, c.cfg.LeaseDuration.Microseconds()).Scan(&id)
	})
	if err == pgx.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return id == c.id, nil
}

// Rescue returns the running jobs of clients whose lease expired to
// available (or discarded after their last attempt, or cancelled when that
// was requested), recording the lost attempt as an error, and wakes their
// queues. The leader runs it every RescueInterval; it is exported for
// operators and tests.
func (c *Client) Rescue(ctx context.Context) error {
	rows, err := c.pool.Query(ctx, c.sql.rescue)
	if err != nil {
		return err
	}
	var wake []string
	for rows.Next() {
		var q string
		var n int64
		if err := rows.Scan(&q, &n); err != nil {
			rows.Close()
			return err
		}
		c.log.Info("jobs: rescued jobs of expired clients", "queue", q, "available", n)
		if n > 0 {
			wake = append(wake, "i:"+q)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(wake) > 0 {
		if _, err := c.pool.Exec(ctx, `SELECT pg_catalog.pg_notify($1, w) FROM pg_catalog.unnest($2::text[]) AS w`, c.channel, wake); err != nil {
			return err
		}
	}
	_, err = c.pool.Exec(ctx, `DELETE FROM `+c.qClientsT+` WHERE expires_at < now() - interval '1 minute'`)
	return err
}

// Prune deletes finished jobs older than their state's retention, in
// batches of 1000, and returns how many it deleted. Each state is one pass
// in ID order over the entries of its listing index (jobs_<state>_list_idx).
func (c *Client) Prune(ctx context.Context) (int64, error) {
	var total int64
	for _, st := range []State{StateCompleted, StateCancelled, StateDiscarded} {
		keep := c.cfg.Retention[st]
		if keep < 0 {
			continue
		}
		var after int64
		for {
			var n, last int64
			if err := c.pool.QueryRow(ctx, c.sql.prune[st], keep.Microseconds(), 1000, after).Scan(&n, &last); err != nil {
				return total, err
			}
			total += n
			if n < 1000 {
				break
			}
			after = last
		}
	}
	return total, nil
}
