/* Embeds the restorer blob (built from restorer.cc) in the cryo binary. */
  .section .rodata
  .balign 64
  .global cryo_restorer_blob
  .global cryo_restorer_blob_end
cryo_restorer_blob:
  .incbin RESTORER_BIN
cryo_restorer_blob_end:
  .section .note.GNU-stack,"",@progbits
