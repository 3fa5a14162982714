// Package tenancy makes PostgreSQL enforce which tenant sees which rows:
// row-level security on shared tables that fails closed, a schema per
// tenant, or a mix of both, with the same application code.
//
// Protect (or ProtectSQL, for a migration file) puts a policy on a table
// with a tenant_id column; WithTenant runs a function in a transaction
// scoped to one tenant with set_config('app.tenant_id', ..., true). Check
// refuses connections whose role would bypass the policies.
package tenancy
