// The EMA command log. Empty until the state document carries a `commands` list per
// ECU; the section stays hidden until then.

import { h } from "./format.js";

/** Show the commands of every ECU that has a `commands` list; hide otherwise. */
export function renderCommands(section, body, ecus) {
  const lists = Object.values(ecus).filter((ecu) => Array.isArray(ecu.commands));
  section.hidden = lists.length === 0;
  if (section.hidden) return;
  body.replaceChildren(...lists.map((ecu) =>
    h("div", {}, h("h3", { text: `ECU ${ecu.ecu_id}` }),
      h("ol", {}, ...ecu.commands.map((c) => h("li", { text: JSON.stringify(c) }))))));
}
