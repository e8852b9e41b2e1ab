// cpp-httplib as Debian 12's libcpp-httplib.so was built: with OpenSSL, zlib and Brotli. Its
// public structs (httplib::Request, httplib::Client...) change layout with these macros, so
// every file that uses httplib includes it through this header (pkg-config --cflags cpp-httplib
// gives the same definitions).
#pragma once

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <httplib.h>
