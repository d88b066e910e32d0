import { resourcesSchema } from "../../runtime/resources.js";

/** The resource types the command tests write. */
export const RESOURCES = resourcesSchema.parse({
  todo: {
    schema: {
      type: "object",
      required: ["title"],
      additionalProperties: false,
      properties: {
        title: { type: "string", minLength: 1 },
        done: { type: "boolean" },
        tags: { type: "array", items: { type: "string" } },
        owner: { type: "object", required: ["name"], properties: { name: { type: "string" } } },
      },
    },
  },
});
