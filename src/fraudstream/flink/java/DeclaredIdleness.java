package fraudstream.flink;

import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;

/**
 * Bounded out-of-orderness watermarks whose idleness the stream declares.
 *
 * <p>Flink's {@code withIdleness} takes a channel for idle when nothing has come from it for
 * a while; a decoder busy with a large batch (or a TaskManager still loading its Python
 * modules) looks the same, and the other channels' watermark then passes the records it is
 * about to send. Here a channel is idle only when its stream says so: an event whose time is
 * the idle mark marks it idle (after its watermark is out), the next other event active
 * again. fraudstream's live decoders send that mark once every line they had is decided.
 */
public final class DeclaredIdleness<T> implements WatermarkStrategy<T> {
    private static final long serialVersionUID = 1L;

    private final long outOfOrdernessMs;
    private final long idleMark;

    /** idleMark: the time of an event that declares its channel idle (before any record's). */
    public DeclaredIdleness(long outOfOrdernessMs, long idleMark) {
        this.outOfOrdernessMs = outOfOrdernessMs;
        this.idleMark = idleMark;
    }

    @Override
    public WatermarkGenerator<T> createWatermarkGenerator(
            WatermarkGeneratorSupplier.Context context) {
        return new Generator<>(outOfOrdernessMs, idleMark);
    }

    static final class Generator<T> implements WatermarkGenerator<T> {
        private final long outOfOrdernessMs;
        private final long idleMark;
        private long maxTimestamp;
        private boolean idle;

        Generator(long outOfOrdernessMs, long idleMark) {
            this.outOfOrdernessMs = outOfOrdernessMs;
            this.idleMark = idleMark;
            // as Flink's BoundedOutOfOrdernessWatermarks: no underflow before the first event
            this.maxTimestamp = Long.MIN_VALUE + outOfOrdernessMs + 1;
        }

        @Override
        public void onEvent(T event, long eventTimestamp, WatermarkOutput output) {
            if (eventTimestamp == idleMark) {
                output.emitWatermark(current());
                output.markIdle();
                idle = true;
                return;
            }
            maxTimestamp = Math.max(maxTimestamp, eventTimestamp);
            if (idle) {
                idle = false;
                output.markActive();
            }
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput output) {
            if (!idle) { // a watermark would make an idle output active again
                output.emitWatermark(current());
            }
        }

        private Watermark current() {
            return new Watermark(maxTimestamp - outOfOrdernessMs - 1);
        }
    }
}
