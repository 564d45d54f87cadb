/*
 * common/errors — the text of every code the library returns.
 */
#include <string.h>

#include "scfetch.h"

const char *scf_strerror(int code)
{
	switch (code) {
#define SCF__ERR_TEXT(name, num, text) case -(num): return text;
	SCF_ERRNO_MAP(SCF__ERR_TEXT)
#undef SCF__ERR_TEXT
	}
	return code < 0 ? strerror(-code) : "success";
}
