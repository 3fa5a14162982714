// Command backup compares justpg's dump + restore drill with raw pg_dump +
// pg_restore (same options) and with a pgBackRest full backup and restore
// of the same cluster, and prints times per step and ratios. Raw and justpg
// runs alternate (raw first in odd runs, justpg first in even ones) so that
// drift in the machine's load favours neither; their means are compared.
//
//	go run ./backup -size-mb 1024 -runs 2 [-no-pgbackrest]
//
// It starts its own local cluster (archive_mode on, archive_command
// pgBackRest's archive-push) from the local server binaries and needs
// pgbackrest on PATH (Debian: apt-get install pgbackrest).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/bench/internal/benchdb"
	"github.com/justpg/justpg/internal/pgtest"
)

func main() {
	sizeMB := flag.Int("size-mb", 256, "approximate database size to generate, in MiB")
	runs := flag.Int("runs", 1, "measured runs of each contender")
	skipBackRest := flag.Bool("no-pgbackrest", false, "skip pgBackRest")
	flag.Parse()
	if err := run(context.Background(), *sizeMB, *runs, *skipBackRest); err != nil {
		fmt.Fprintln(os.Stderr, "bench backup:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, sizeMB, runs int, skipBackRest bool) error {
	work, err := os.MkdirTemp("", "justpg-bench-backup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil {
		return err
	}
	owner, err := pgUser()
	if err != nil {
		return err
	}
	pbConf := filepath.Join(work, "pgbackrest.conf")
	settings := map[string]string{"wal_level": "replica", "max_wal_senders": "4"}
	havePB := false
	if !skipBackRest {
		if _, err := exec.LookPath("pgbackrest"); err == nil {
			havePB = true
			settings["archive_mode"] = "on"
			settings["archive_command"] = "pgbackrest --config=" + pbConf + " --stanza=bench archive-push %p"
		} else {
			fmt.Println("pgbackrest not found on PATH: skipping it (apt-get install pgbackrest)")
		}
	}
	srv, err := pgtest.StartLocal(ctx, pgtest.ClusterOptions{Settings: settings, Durable: true})
	if err != nil {
		return err
	}
	defer srv.Stop(context.Background())
	binDir, _ := srv.BinDir()
	dataDir, _ := srv.DataDir()
	port, _ := srv.Port()
	fmt.Printf("machine: %s\nserver: local cluster, binaries %s; run under contention from other processes on this machine\n", benchdb.Machine(), binDir)

	// The database.
	admin, err := pgx.Connect(ctx, srv.AdminURL())
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE shop"); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, srv.DatabaseURL("shop"))
	if err != nil {
		return err
	}
	defer pool.Close()
	t0 := time.Now()
	if err := generate(ctx, pool, sizeMB); err != nil {
		return err
	}
	var dbSize int64
	if err := pool.QueryRow(ctx, "SELECT pg_database_size('shop')").Scan(&dbSize); err != nil {
		return err
	}
	fmt.Printf("generated %s database in %s\n", mib(dbSize), time.Since(t0).Round(time.Second))

	type result struct {
		name         string
		backup, rest time.Duration
		size         int64
	}
	var results []result
	best := func(name string, f func() (time.Duration, time.Duration, int64, error)) error {
		var r result
		r.name = name
		for i := 0; i < runs; i++ {
			b, rs, sz, err := f()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			fmt.Printf("  %-26s backup %8s  restore %8s  size %s\n", name, b.Round(time.Millisecond), rs.Round(time.Millisecond), mib(sz))
			if i == 0 || b+rs < r.backup+r.rest {
				r.backup, r.rest, r.size = b, rs, sz
			}
		}
		results = append(results, r)
		return nil
	}

	// 1. raw pg_dump + pg_restore, custom format, default compression.
	raw := func() (step, error) {
		var s step
		file := filepath.Join(work, "raw.dump")
		defer os.Remove(file)
		t := time.Now()
		if err := cmd(filepath.Join(binDir, "pg_dump"), "--format=custom", "--no-password", "--file="+file, "--dbname="+srv.DatabaseURL("shop")); err != nil {
			return s, err
		}
		s.dump = time.Since(t)
		st, _ := os.Stat(file)
		s.size = st.Size()
		// A hand-made restore test does what the drill does around
		// pg_restore: create a scratch database and drop it afterwards.
		t = time.Now()
		if _, err := admin.Exec(ctx, "CREATE DATABASE raw_restore TEMPLATE template0"); err != nil {
			return s, err
		}
		t1 := time.Now()
		err := cmd(filepath.Join(binDir, "pg_restore"), "--no-password", "--exit-on-error", "--dbname="+srv.DatabaseURL("raw_restore"), file)
		s.pgRestore = time.Since(t1)
		if _, derr := admin.Exec(ctx, "DROP DATABASE raw_restore WITH (FORCE)"); err == nil {
			err = derr
		}
		s.restore = time.Since(t)
		return s, err
	}
	// 2. justpg: Dump (snapshot, counts, SHA-256, atomic write) + Drill
	// (verify, restore, count, drop).
	justpg := func() (step, error) {
		var s step
		repoDir := filepath.Join(work, "justpg")
		defer os.RemoveAll(repoDir)
		repo, err := backup.NewDirRepository(repoDir)
		if err != nil {
			return s, err
		}
		m, err := backup.New(pool, backup.Config{Repository: repo, BinDir: binDir})
		if err != nil {
			return s, err
		}
		t := time.Now()
		man, err := m.Dump(ctx)
		if err != nil {
			return s, err
		}
		s.dump = time.Since(t)
		s.size = man.Size
		t = time.Now()
		rep, err := m.Drill(ctx, man.ID)
		if err != nil {
			return s, err
		}
		s.restore = time.Since(t)
		s.pgRestore, s.verify, s.count, s.rows = rep.Restore, rep.Verify, rep.Count, rep.Rows
		return s, nil
	}
	// Alternate the contenders (raw first in even runs, justpg first in
	// odd ones) so that drift in the machine's load favours neither.
	var rawSteps, jpSteps []step
	for i := 0; i < runs; i++ {
		order := []string{"raw", "justpg"}
		if i%2 == 1 {
			order = []string{"justpg", "raw"}
		}
		for _, who := range order {
			if who == "raw" {
				s, err := raw()
				if err != nil {
					return fmt.Errorf("pg_dump + pg_restore: %w", err)
				}
				rawSteps = append(rawSteps, s)
				fmt.Printf("  run %d %-22s dump %8s  restore %8s (pg_restore %s)  total %8s  %s\n", i+1, "pg_dump + pg_restore",
					ms(s.dump), ms(s.restore), ms(s.pgRestore), ms(s.dump+s.restore), mib(s.size))
			} else {
				s, err := justpg()
				if err != nil {
					return fmt.Errorf("justpg: %w", err)
				}
				jpSteps = append(jpSteps, s)
				fmt.Printf("  run %d %-22s dump %8s  drill   %8s (pg_restore %s, verify %s alongside, count after restore %s, %d rows)  total %8s  %s\n",
					i+1, "justpg Dump + Drill", ms(s.dump), ms(s.restore), ms(s.pgRestore), ms(s.verify), ms(s.count), s.rows, ms(s.dump+s.restore), mib(s.size))
			}
		}
	}
	results = append(results, mean("pg_dump + pg_restore", rawSteps), mean("justpg Dump + Drill", jpSteps))
	rawAdded, jpAdded := time.Duration(0), time.Duration(0)
	for i := range rawSteps {
		rawAdded += rawSteps[i].dump + rawSteps[i].restore - rawSteps[i].pgRestore
		jpAdded += jpSteps[i].dump + jpSteps[i].restore - jpSteps[i].pgRestore
	}
	n := time.Duration(len(rawSteps))
	fmt.Printf("\nmean time outside pg_restore (dump, create/drop, verify, count): raw %s, justpg %s\n", ms(rawAdded/n), ms(jpAdded/n))

	// 3. pgBackRest full backup of the cluster + restore into a new data
	// directory (files only; the server still has to start and replay WAL).
	if havePB {
		pbRepo := filepath.Join(work, "pbrepo")
		for _, d := range []string{pbRepo, filepath.Join(work, "pblog"), filepath.Join(work, "pblock")} {
			if err := os.MkdirAll(d, 0o750); err != nil {
				return err
			}
			_ = os.Chown(d, owner.Uid, owner.Gid)
		}
		conf := fmt.Sprintf(`[global]
repo1-path=%s
log-path=%s
lock-path=%s
log-level-console=warn
log-level-file=off
start-fast=y
archive-timeout=900
repo1-retention-full=10
compress-type=gz
process-max=1

[bench]
pg1-path=%s
pg1-port=%d
pg1-socket-path=%s
pg1-user=postgres
`, pbRepo, filepath.Join(work, "pblog"), filepath.Join(work, "pblock"), dataDir, port, filepath.Dir(dataDir))
		if err := os.WriteFile(pbConf, []byte(conf), 0o644); err != nil {
			return err
		}
		pb := func(args ...string) error {
			return cmdAs(owner, "pgbackrest", append([]string{"--config=" + pbConf, "--stanza=bench"}, args...)...)
		}
		if err := pb("stanza-create"); err != nil {
			return err
		}
		// Let the archiver work off the WAL of the data load first, so the
		// backup is timed, not the backlog.
		t0 := time.Now()
		if err := waitArchived(ctx, pool); err != nil {
			return err
		}
		fmt.Printf("  (WAL archive backlog of the data load drained in %s, not timed)\n", time.Since(t0).Round(time.Second))
		err = best("pgBackRest full + restore", func() (time.Duration, time.Duration, int64, error) {
			t := time.Now()
			if err := pb("backup", "--type=full"); err != nil {
				return 0, 0, 0, err
			}
			bt := time.Since(t)
			target := filepath.Join(work, "pbrestore")
			_ = os.RemoveAll(target)
			if err := os.MkdirAll(target, 0o700); err != nil {
				return 0, 0, 0, err
			}
			_ = os.Chown(target, owner.Uid, owner.Gid)
			t = time.Now()
			err := pb("restore", "--pg1-path="+target)
			rt := time.Since(t)
			_ = os.RemoveAll(target)
			return bt, rt, dirSize(filepath.Join(pbRepo, "backup")), err
		})
		if err != nil {
			return err
		}
	}

	fmt.Printf("\nmeans over %d alternating runs (pgBackRest: best of %d)\n", runs, runs)
	fmt.Printf("%-28s %10s %10s %10s %8s %10s\n", "contender", "backup", "restore", "total", "ratio", "size")
	base := results[0].backup + results[0].rest
	for _, r := range results {
		tot := r.backup + r.rest
		fmt.Printf("%-28s %10s %10s %10s %7.3fx %10s\n", r.name, r.backup.Round(time.Millisecond), r.rest.Round(time.Millisecond),
			tot.Round(time.Millisecond), float64(tot)/float64(base), mib(r.size))
	}
	fmt.Printf("\njustpg overhead over raw pg_dump + pg_restore (means): %+.1f%% (target <= 5%%)\n",
		100*(float64(results[1].backup+results[1].rest)/float64(base)-1))
	return nil
}

// generate fills an orders schema of roughly sizeMB MiB: customers,
// products, orders with JSON payloads, order lines, with indexes.
func generate(ctx context.Context, pool *pgxpool.Pool, sizeMB int) error {
	// About 560 bytes per order including its lines and indexes.
	orders := sizeMB * 1024 * 1024 / 560
	customers := orders/20 + 1
	stmts := []string{
		`CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL, country char(2), created_at timestamptz NOT NULL)`,
		`CREATE TABLE products (id int PRIMARY KEY, sku text NOT NULL UNIQUE, title text NOT NULL, price numeric(10,2) NOT NULL)`,
		`CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, status text NOT NULL,
			total numeric(12,2) NOT NULL, placed_at timestamptz NOT NULL, shipping jsonb NOT NULL)`,
		`CREATE TABLE order_lines (order_id bigint NOT NULL REFERENCES orders, line int NOT NULL, product_id int NOT NULL REFERENCES products,
			qty int NOT NULL, price numeric(10,2) NOT NULL, PRIMARY KEY (order_id, line))`,
		fmt.Sprintf(`INSERT INTO customers SELECT g, 'user' || g || '@example.com', 'Customer ' || md5(g::text),
			(ARRAY['DE','FR','US','GB','NL','SE'])[1 + g %% 6], now() - (g %% 1000) * interval '1 day' FROM generate_series(1, %d) g`, customers),
		`INSERT INTO products SELECT g, 'SKU-' || g, 'Product ' || md5(g::text), (g % 500) + 0.99 FROM generate_series(1, 5000) g`,
		fmt.Sprintf(`INSERT INTO orders SELECT g, 1 + g %% %d, (ARRAY['new','paid','shipped','delivered'])[1 + g %% 4], (g %% 10000) / 7.0,
			now() - (g %% 100000) * interval '1 minute',
			jsonb_build_object('street', md5(g::text), 'city', 'City ' || (g %% 977), 'zip', lpad((g %% 99999)::text, 5, '0'), 'notes', md5((g*3)::text))
			FROM generate_series(1, %d) g`, customers, orders),
		fmt.Sprintf(`INSERT INTO order_lines SELECT o, l, 1 + (o * l) %% 5000, 1 + (o + l) %% 5, ((o * l) %% 500) + 0.99
			FROM generate_series(1, %d) o, generate_series(1, 2) l`, orders),
		`CREATE INDEX ON orders (customer_id, placed_at)`,
		`CREATE INDEX ON orders (status) WHERE status <> 'delivered'`,
		`VACUUM ANALYZE`,
	}
	for _, s := range stmts {
		if _, err := pool.Exec(ctx, s); err != nil {
			return fmt.Errorf("generating data: %w", err)
		}
	}
	return nil
}

// waitArchived switches to a new WAL segment and waits until the previous
// one is archived.
func waitArchived(ctx context.Context, pool *pgxpool.Pool) error {
	var seg string
	if err := pool.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
		return err
	}
	for i := 0; i < 3600; i++ {
		var last *string
		if err := pool.QueryRow(ctx, "SELECT last_archived_wal FROM pg_stat_archiver").Scan(&last); err != nil {
			return err
		}
		if last != nil && *last >= seg {
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("WAL segment %s not archived after an hour", seg)
}

type pgOwner struct{ Uid, Gid int }

func pgUser() (pgOwner, error) {
	if os.Geteuid() != 0 {
		return pgOwner{os.Getuid(), os.Getgid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return pgOwner{}, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return pgOwner{uid, gid}, nil
}

func cmd(name string, args ...string) error {
	c := exec.Command(name, args...)
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(name), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func cmdAs(o pgOwner, name string, args ...string) error {
	c := exec.Command(name, args...)
	if os.Geteuid() == 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(o.Uid), Gid: uint32(o.Gid)}}
		c.Dir = "/tmp"
	}
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// step is one run of a contender, split into its steps.
type step struct {
	dump, restore time.Duration // restore: everything after the dump
	pgRestore     time.Duration // the pg_restore command alone
	verify, count time.Duration // justpg: checksum check (alongside pg_restore), counting after it
	rows, size    int64
}

func mean(name string, steps []step) (r struct {
	name         string
	backup, rest time.Duration
	size         int64
}) {
	r.name = name
	for _, s := range steps {
		r.backup += s.dump
		r.rest += s.restore
		r.size = s.size
	}
	r.backup /= time.Duration(len(steps))
	r.rest /= time.Duration(len(steps))
	return r
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
