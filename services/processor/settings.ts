import type { TopicSpec } from "../../runtime/bus.js";
import type { Topics } from "./processor.js";

/** Every topic of the write path, with its partition count (the DLQ gets the same). */
export function writePathTopics(topics: Topics, partitions: number): TopicSpec[] {
  return [topics.commands, topics.commandsDlq, topics.entityEvents].map((name) => ({ name, partitions }));
}
