import { useRef, type KeyboardEvent } from "react";
import type { BackendType } from "../../api/client";
import { BACKENDS } from "../../backends";
import { BackendIcon } from "../BackendIndicator";

interface Props {
  /** Prefix of the tab and panel ids (two tab lists may share a page). */
  idPrefix: string;
  label: string;
  selected: BackendType;
  onSelect: (type: BackendType) => void;
  /** A short note after a tab's name (e.g. why it is limited), also read by screen readers. */
  notes?: Partial<Record<BackendType, string>>;
}

export const tabId = (prefix: string, type: BackendType) => `${prefix}-tab-${type}`;
export const panelId = (prefix: string, type: BackendType) => `${prefix}-panel-${type}`;

/** The WAI-ARIA tabs pattern: one tab stop; arrows, Home and End move and select. */
export function BackendTypeSelector({ idPrefix, label, selected, onSelect, notes }: Props) {
  const refs = useRef<Partial<Record<BackendType, HTMLButtonElement | null>>>({});
  const move = (event: KeyboardEvent<HTMLDivElement>) => {
    const index = BACKENDS.findIndex((backend) => backend.type === selected);
    let next = index;
    if (event.key === "ArrowRight") next = (index + 1) % BACKENDS.length;
    else if (event.key === "ArrowLeft") next = (index - 1 + BACKENDS.length) % BACKENDS.length;
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = BACKENDS.length - 1;
    else return;
    event.preventDefault();
    const type = BACKENDS[next]!.type;
    onSelect(type);
    refs.current[type]?.focus();
  };
  return (
    <div role="tablist" aria-label={label} className="tab-list" onKeyDown={move}>
      {BACKENDS.map((backend) => {
        const isSelected = backend.type === selected;
        const note = notes?.[backend.type];
        return (
          <button
            key={backend.type}
            ref={(element) => {
              refs.current[backend.type] = element;
            }}
            type="button"
            role="tab"
            id={tabId(idPrefix, backend.type)}
            aria-selected={isSelected}
            aria-controls={panelId(idPrefix, backend.type)}
            tabIndex={isSelected ? 0 : -1}
            className={`tab backend-${backend.type}`}
            onClick={() => onSelect(backend.type)}
          >
            <BackendIcon type={backend.type} />
            <span>{backend.label}</span>
            {note && <span className="tab-note">{note}</span>}
          </button>
        );
      })}
    </div>
  );
}
