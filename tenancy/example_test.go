package tenancy_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/tenancy"
)

// Two tenants write notes through the same code; each sees only its own,
// and a transaction that names no tenant sees nothing.
func Example() {
	ctx := context.Background()
	srv, err := pgtest.Start(ctx) // your server in real life
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)
	dbName, role := "tenancy_example_"+randHex(4), "tenancy_example_app_"+randHex(4)
	admin, err := pgx.Connect(ctx, srv.AdminURL())
	if err != nil {
		log.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+dbName); err != nil {
		log.Fatal(err)
	}
	defer admin.Exec(ctx, "DROP DATABASE "+dbName+" WITH (FORCE)")
	defer admin.Exec(ctx, "DROP ROLE IF EXISTS "+role)

	// As the owner: the package's tables, the app's table, the policy, and
	// the application role.
	owner, err := pgxpool.New(ctx, srv.DatabaseURL(dbName))
	if err != nil {
		log.Fatal(err)
	}
	defer owner.Close()
	m, err := tenancy.New(tenancy.Config{})
	if err != nil {
		log.Fatal(err)
	}
	must(tenancy.Migrate(ctx, owner))
	_, err = owner.Exec(ctx, `CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, `+
		tenancy.TenantIDColumnSQL+`, body text NOT NULL)`)
	must(err)
	must(tenancy.Protect(ctx, owner, "notes"))
	must(m.CreateAppRole(ctx, owner, tenancy.AppRole{Name: role, Password: "s3cret", Schemas: []string{"public"}}))
	defer owner.Exec(ctx, "DROP OWNED BY "+role)
	acme, err := m.Create(ctx, owner, tenancy.NewTenant{Slug: "acme", Name: "Acme"})
	must(err)
	globex, err := m.Create(ctx, owner, tenancy.NewTenant{Slug: "globex", Name: "Globex"})
	must(err)

	// As the application.
	cfg, err := pgxpool.ParseConfig(srv.DatabaseURL(dbName))
	must(err)
	cfg.ConnConfig.User, cfg.ConnConfig.Password = role, "s3cret"
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	must(err)
	defer app.Close()
	must(tenancy.Check(ctx, app)) // refuses a role that would bypass RLS

	for _, t := range []tenancy.Tenant{acme, globex, acme} {
		must(m.WithTenant(ctx, app, t.ID, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ($1)`, "note of "+t.Name)
			return err
		}))
	}
	for _, t := range []tenancy.Tenant{acme, globex} {
		must(m.WithTenant(ctx, app, t.ID, func(tx pgx.Tx) error {
			rows, _ := tx.Query(ctx, `SELECT body FROM notes ORDER BY id`)
			bodies, err := pgx.CollectRows(rows, pgx.RowTo[string])
			fmt.Println(t.Slug, bodies)
			return err
		}))
	}
	var n int
	must(app.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n))
	fmt.Println("without a tenant:", n, "rows")
	_, err = app.Exec(ctx, `INSERT INTO notes (body) VALUES ('orphan')`)
	fmt.Println("insert without a tenant refused:", err != nil)
	// Output:
	// acme [note of Acme note of Acme]
	// globex [note of Globex]
	// without a tenant: 0 rows
	// insert without a tenant refused: true
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
