/*
 * cmt_events_vtab.h: `cmt_events`, a virtual table that is a block-form trace's events table (see
 * cmt_events_vtab.c). Internal to schema/: cmt_db_events.c creates it.
 */
#ifndef CMT_EVENTS_VTAB_H
#define CMT_EVENTS_VTAB_H

#ifdef CMT_SQLITE_EXTENSION
#include <sqlite3ext.h>
#else
#include <sqlite3.h>
#endif

#include <stdint.h>

/* Registers the module `cmt_events` on db (once per connection). `CREATE VIRTUAL TABLE temp.X USING
 * cmt_events` then reads main.events_blocks: the columns of CMT_BLOCK_COLUMNS, in seq order. notnull: bit c
 * set if column c (in CMT_BLOCK_COLUMNS order) may not be NULL. */
int cmt_events_vtab_register(sqlite3 *db, uint32_t notnull);

#endif
