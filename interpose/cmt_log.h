/*
 * cmt_log.h: the interposer's only way to speak. Writes one line to stderr with write(2) (no stdio
 * buffers, usable from any thread and after fork); never stdout, which belongs to the program.
 */
#ifndef CMT_LOG_H
#define CMT_LOG_H

void cmt_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
