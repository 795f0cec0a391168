-- cumemtrace trace file, schema version 4: source lines of stack frames (DWARF), inlined functions too.
--
-- Added to every new file after cumemtrace.sql, cumemtrace_v2.sql and cumemtrace_v3.sql (all unchanged),
-- and run on its own to upgrade a version 1, 2 or 3 file in place (cmt_db_migrate). Written by
-- cumemtrace-writer (writer/cmt_lines.c, through elfutils' libdw) for each frame whose module has debug
-- information (in the file itself, or a separate debug file found by build id or .gnu_debuglink); frames
-- without any have no rows here. schema/README.md documents every column.

-- One row per source location of a frame: depth 0 is where the frame's address is (the call instruction
-- before its return address), in the innermost function there, which may have been inlined; depth 1.. are
-- the functions it was inlined into, each at the line that called the one before, outermost (the function
-- the symbol table names) last.
CREATE TABLE IF NOT EXISTS frame_lines (
    frame_id  INTEGER NOT NULL REFERENCES frames,
    depth     INTEGER NOT NULL,   -- 0: the address's own location; 1..: the inlined-into callers
    function  TEXT,               -- the function at this depth (DWARF name, linkage name when present);
                                  -- NULL when DWARF names none
    file      TEXT,               -- source file as the compiler recorded it (absolute when it knew the
                                  -- directory); NULL when unknown
    line      INTEGER,            -- 1-based line; NULL or 0 when unknown
    "column"  INTEGER,            -- 1-based column; NULL or 0 when unknown
    PRIMARY KEY (frame_id, depth)
) WITHOUT ROWID;

-- Every stack with its inlined frames expanded: for each stack depth (innermost first, as stack_frames),
-- its frame_lines rows (inline_depth = frame_lines.depth), or one row with the symbol table's name and no
-- file when the frame has no lines. Order by depth, inline_depth for the stack as a debugger shows it.
CREATE VIEW IF NOT EXISTS stack_lines AS
SELECT s.stack_id, s.depth, coalesce(l.depth, 0) AS inline_depth, coalesce(l.function, f.function) AS function,
       l.file, l.line
FROM stacks s JOIN frames f ON f.frame_id = s.frame_id
LEFT JOIN frame_lines l ON l.frame_id = f.frame_id;
