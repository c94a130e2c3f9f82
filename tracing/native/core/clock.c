/* Tick source and calibration (native-tracer.md §5.5).
 *
 * Events are stamped with raw `rdtsc` (x86-64) or `cntvct_el0` (aarch64) when the counter is
 * invariant, else with CLOCK_MONOTONIC nanoseconds. Producers never read a wall clock: the sink
 * and the control plane record anchors (ticks, monotonic, realtime) and the frequency is
 * measured between the process start anchor and a later one, against CLOCK_MONOTONIC (immune to
 * wall-clock steps). The lakehouse converts ticks with start anchor + frequency (§6).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sirius_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define SR_HAVE_TSC 1
#elif defined(__aarch64__)
#define SR_HAVE_TSC 1
#else
#define SR_HAVE_TSC 0
#endif

/* Read on every event; written only by init (before any thread can observe RUNNING). */
int sr_use_tsc;
static uint64_t sr_fixed_frequency; /* known without calibration (cntfrq_el0, CPUID 0x15), else 0 */

int64_t sr_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t sr_real_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t sirius_now(void) { return sr_clock_ticks(); }

static int sr_tsc_invariant(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid_max(0x80000000, NULL) < 0x80000007) return 0;
    __cpuid(0x80000007, a, b, c, d);
    if (!((d >> 8) & 1)) return 0; /* CPUID.80000007H:EDX[8] invariant TSC */
    /* Linux only trusts the TSC across CPUs when it made it the clocksource. */
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f) {
        char buf[32] = {0};
        int ok = fgets(buf, sizeof buf, f) != NULL && strncmp(buf, "tsc", 3) == 0;
        fclose(f);
        return ok;
    }
    return 1;
#elif defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}

static uint64_t sr_known_frequency(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) >= 0x15) {
        __cpuid_count(0x15, 0, a, b, c, d);
        if (a && b && c) return (uint64_t)c * b / a; /* crystal Hz × ratio */
    }
    return 0;
#elif defined(__aarch64__)
    uint64_t f;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(f));
    return f;
#else
    return 0;
#endif
}

void sr_clock_init(int which) {
    int tsc = 0;
    if (which == SIRIUS_CLOCK_TSC) tsc = SR_HAVE_TSC;
    else if (which == SIRIUS_CLOCK_AUTO) tsc = SR_HAVE_TSC && sr_tsc_invariant();
    sr_use_tsc = tsc;
    sr_fixed_frequency = tsc ? sr_known_frequency() : 1000000000ull;
}

/* A tick reading bracketed by the two clocks; of a few tries keep the narrowest bracket so the
 * pair is as simultaneous as the machine allows (tens of ns). */
sr_anchor sr_anchor_now(void) {
    sr_anchor best = {0, 0, 0};
    uint64_t best_width = UINT64_MAX;
    for (int i = 0; i < 5; i++) {
        uint64_t t0 = sr_clock_ticks();
        int64_t mono = sr_mono_ns();
        int64_t real = sr_real_ns();
        uint64_t t1 = sr_clock_ticks();
        if (t1 - t0 < best_width) {
            best_width = t1 - t0;
            best.ticks = t0 + (t1 - t0) / 2;
            best.mono_ns = mono;
            best.real_ns = real;
        }
    }
    if (!sr_use_tsc) best.ticks = (uint64_t)best.mono_ns; /* exact in fallback mode */
    return best;
}

/* The tick frequency: fixed when the platform says, else measured from the start anchor to now.
 * The relative error is about (bracket width / interval), and an event's time error grows with
 * its distance from the start: the caller-visible interval is at least 20 ms (sleeping for the
 * rest if allowed), and the sink first calibrates at its first block, typically one flush period
 * (1 s) after init, giving ~1e-7. Frozen once computed: ProcessInfo is registered once. */
uint64_t sr_calibrate(int allow_sleep) {
    uint64_t f = atomic_load_explicit(&sr_g.frequency, memory_order_acquire);
    if (f) return f;
    if (sr_fixed_frequency) {
        f = sr_fixed_frequency;
    } else {
        int64_t min_interval = 20000000; /* 20 ms */
        int64_t elapsed = sr_mono_ns() - sr_g.start.mono_ns;
        if (elapsed < min_interval && allow_sleep) {
            struct timespec ts = {0, (long)(min_interval - elapsed)};
            nanosleep(&ts, NULL);
        }
        sr_anchor now = sr_anchor_now();
        int64_t dns = now.mono_ns - sr_g.start.mono_ns;
        if (dns <= 0) dns = 1;
        double hz = (double)(now.ticks - sr_g.start.ticks) * 1e9 / (double)dns;
        f = hz > 1.0 ? (uint64_t)(hz + 0.5) : 1000000000ull;
    }
    uint64_t expected = 0;
    /* First caller wins; everyone returns the same frozen value. */
    if (!atomic_compare_exchange_strong(&sr_g.frequency, &expected, f)) f = expected;
    return f;
}
